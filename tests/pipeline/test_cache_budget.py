"""The store's limits reach the cache program of every go command a build runs: `cache_min_free` makes the
store yield to the disk after a build that wrote to it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from gocaas.cache.store import Store
from gocaas.settings import Settings
from tests.cache.conftest import age, sha
from tests.conftest import EXAMPLES, BuildFn


def test_a_build_on_a_disk_under_cache_min_free_evicts_old_entries(
    build: BuildFn, settings: Settings, tmp_path: Path
) -> None:
    store = Store(settings.cache_dir, max_size=None)
    stale = []
    for i in range(3):  # entries nobody used for a day, in a namespace of their own
        body = os.urandom(64 * 1024)
        key = sha(b"stale %d " % i + body)
        store.put("stale-entries", key, sha(body), body)
        age(store, "stale-entries", key, 86400)
        stale.append((key, Path(store.path(sha(body)))))
    young = {path for path in Path(store.objects_dir).glob("*/*")} - {path for _, path in stale}
    source = shutil.copytree(EXAMPLES / "hello", tmp_path / "hello")
    # new code, so that the build puts something: only writers check the disk
    (source / "unique.go").write_text(f'package main\n\nconst unique = "{os.urandom(8).hex()}"\n')
    # No disk here has 99% free: every go command that wrote finds it short. Everything else in the
    # session's store was used within min_age (2 h), so only the stale entries can go.
    report = build(source, settings_=settings.model_copy(update={"cache_min_free": "99%"}))
    assert report.failure is None, report.failure
    assert report.cache is not None and report.cache.puts > 0
    deadline = time.monotonic() + 60  # the gc runs after the go command let go of its cache program
    while any(path.exists() for _, path in stale) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(path.exists() for _, path in stale), "the stale objects were evicted"
    assert all(store.get("stale-entries", key) is None for key, _ in stale)
    # said where the program's stderr went then: the go command's (a gc during the session, in the stage's
    # log), or the store's log (a gc after it)
    logs = [settings.cache_dir / "cacheprog.log", *(settings.builds_dir / report.build_id).rglob("*.log")]
    said = [path for path in logs if path.is_file() and "short of min_free 99%: removed" in path.read_text()]
    assert said, logs
    assert all(path.exists() for path in young), "what the session used (within min_age) was kept"
