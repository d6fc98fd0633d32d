"""Retention: finished builds older than `server_keep_days` are forgotten — their database rows (stages,
log, artifacts, test rows cascade) and then their directory. The result cache and the build cache keep what
they keep on their own budgets, so an identical build is still answered after its original is pruned."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta

import structlog

from gocaas.settings import Settings
from gocaas.store.builds import BuildRepo

__all__ = ["Pruner", "prune_builds"]

log = structlog.get_logger("gocaas.retention")


def prune_builds(settings: Settings, builds: BuildRepo, now: datetime | None = None) -> int:
    """Forget the builds that finished more than `server_keep_days` ago; returns how many."""
    if settings.server_keep_days <= 0:
        return 0
    before = (now or datetime.now(UTC)) - timedelta(days=settings.server_keep_days)
    pruned = 0
    while ids := builds.expired(before):
        # Rows first: once they are gone the API no longer offers files that are about to go.
        pruned += builds.delete(ids)
        for build_id in ids:
            shutil.rmtree(settings.builds_dir / build_id, ignore_errors=True)
    if pruned:
        log.info("pruned finished builds", count=pruned, finished_before=before.isoformat())
    return pruned


class Pruner:
    """Prunes every `server_prune_interval` seconds on a thread of its own, until stopped."""

    def __init__(self, settings: Settings, builds: BuildRepo) -> None:
        self._settings = settings
        self._builds = builds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gocaas-pruner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._settings.server_prune_interval):
            try:
                prune_builds(self._settings, self._builds)
            except Exception:  # the database may be away; try again next time
                log.exception("pruning failed")
