"""Retention: finished builds older than `server_keep_days` are forgotten — their database rows (stages,
log, artifacts, test rows cascade) and then their directory — and so are the directories of builds the
database never knew (`gocaas build` on the command line) once as old. The result cache and the build cache
keep what they keep on their own budgets, so an identical build is still answered after its original is
pruned."""

from __future__ import annotations

import re
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog

from gocaas.settings import Settings
from gocaas.store.builds import BuildRepo

__all__ = ["Pruned", "Pruner", "prune_builds"]

log = structlog.get_logger("gocaas.retention")

_BUILD_ID: Final = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{8}$")


@dataclass(frozen=True, slots=True)
class Pruned:
    records: int  # builds the database knew: rows and directory
    directories: int  # directories of builds it never knew


def prune_builds(
    settings: Settings, builds: BuildRepo, *, keep_days: float | None = None, now: datetime | None = None
) -> Pruned:
    """Forget builds that finished more than `keep_days` (default: `server_keep_days`) ago; 0 keeps all."""
    days = settings.server_keep_days if keep_days is None else keep_days
    if days <= 0:
        return Pruned(0, 0)
    before = (now or datetime.now(UTC)) - timedelta(days=days)
    records = 0
    while ids := builds.expired(before):
        # Rows first: once they are gone the API no longer offers files that are about to go.
        records += builds.delete(ids)
        for build_id in ids:
            shutil.rmtree(settings.builds_dir / build_id, ignore_errors=True)
    directories = _prune_unknown(settings, builds, before.timestamp())
    if records or directories:
        log.info("pruned builds", records=records, directories=directories, before=before.isoformat())
    return Pruned(records, directories)


def _prune_unknown(settings: Settings, builds: BuildRepo, before: float) -> int:
    """Directories of command-line builds (no row), untouched since `before`. A build the database knows
    is left to its row: a queued or running one may be old and still wanted."""
    try:
        entries = [e for e in settings.builds_dir.iterdir() if _BUILD_ID.fullmatch(e.name) and e.is_dir()]
    except FileNotFoundError:
        return 0
    old = [e for e in entries if e.stat().st_mtime < before]
    known = builds.known([e.name for e in old])
    removed = 0
    for entry in old:
        if entry.name not in known:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


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
            started = time.monotonic()
            try:
                prune_builds(self._settings, self._builds)
            except Exception:  # the database may be away; try again next time
                log.exception("pruning failed", after_s=round(time.monotonic() - started, 3))
