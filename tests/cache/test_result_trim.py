"""The result cache's budget: least recently used entries go first, never one just used, and the disk's
min_free counts too; a real build trims what earlier builds left."""

from __future__ import annotations

import os
import time
from pathlib import Path

from gocaas.cache.diskspace import MinFree, free_space
from gocaas.cache.results import ResultCache, trim
from gocaas.settings import Settings
from tests.conftest import BuildFn, copy_example

KB = 1024


def _entry(cache: ResultCache, tmp: Path, name: str, size: int, hours_ago: float) -> str:
    key = name.encode().hex().ljust(64, "0")
    body = tmp / f"{name}.bin"
    body.write_bytes(os.urandom(size))
    cache.store(key, {"build_id": name}, [body])
    when = time.time() - hours_ago * 3600
    os.utime(cache.root / key[:2] / key / "result.json", (when, when))
    return key


def test_trim_holds_the_budget_least_recently_used_first(tmp_path: Path) -> None:
    root = tmp_path / "results"
    teams = {ns: ResultCache(root / ns) for ns in ("team-a", "team-b")}
    keys = [  # (namespace, key), oldest first, the two namespaces interleaved
        (ns, _entry(teams[ns], tmp_path, f"b{i}", 100 * KB, 10 - i))
        for i, ns in enumerate(["team-a", "team-b"] * 3)
    ]
    used_ns, used_key = keys[0]
    assert teams[used_ns].lookup(used_key) is not None  # the oldest, used again now
    staging = root / "team-a" / "ab" / ".ab00.123.456"  # a killed writer's
    staging.mkdir(parents=True)
    old = time.time() - 3600
    os.utime(staging, (old, old))
    trimmed = trim(root, 350 * KB, min_age_s=60)
    left = [(ns, key) for ns, key in keys if teams[ns].lookup(key) is not None]
    assert left == [keys[0], keys[4], keys[5]], "the one used again, and the newest"
    assert trimmed.entries == 3 and 3 * 100 * KB <= trimmed.removed_bytes < 4 * 100 * KB
    assert 3 * 100 * KB <= trimmed.total_after <= 350 * KB
    assert not staging.exists()
    assert not any(p.name.startswith(".trim-") for p in root.rglob("*")), "nothing left in the trash"
    young = trim(root, 0, min_age_s=3600)  # over any budget, but everything left was used within the hour
    assert young.entries == 0 and len([k for ns, k in keys if teams[ns].lookup(k)]) == 3


def test_trim_frees_the_disk_down_to_min_free(small_disk: Path, tmp_path: Path) -> None:
    root = small_disk / "results"
    cache = ResultCache(root / "default")
    keys = [_entry(cache, tmp_path, f"b{i}", 1 << 20, 10 - i) for i in range(10)]
    assert free_space(str(root))[0] < 10 << 20
    trimmed = trim(root, None, MinFree(nbytes=10 << 20))
    assert free_space(str(root))[0] >= 10 << 20
    gone = [k for k in keys if cache.lookup(k) is None]
    assert gone == keys[: len(gone)] and 0 < trimmed.entries == len(gone) < len(keys)


def test_a_build_trims_the_results_of_earlier_ones(
    build: BuildFn,
    fresh_settings,  # type: ignore[no-untyped-def]
    settings: Settings,
    tmp_path: Path,
) -> None:
    worker: Settings = fresh_settings(reuse_results=True, results_max_size=1)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    (worker.home / "cache").symlink_to(settings.cache_dir)  # the session's warm store
    first = build(copy_example("hello", tmp_path / "one"), settings_=worker, out=tmp_path / "out1")
    assert first.failure is None, first.failure
    (entry,) = worker.results_dir.glob("*/*")
    assert entry.is_dir(), "kept although over the budget: just used"
    old = time.time() - 3600
    os.utime(entry / "result.json", (old, old))
    second = copy_example("hello", tmp_path / "two")
    (second / "extra.go").write_text("package main\n\nconst extra = 1\n")
    report = build(second, settings_=worker, out=tmp_path / "out2")
    assert report.failure is None and report.reused_from is None
    assert not entry.exists(), "the older build's result went"
    assert [p.name for p in worker.results_dir.glob("*/*")] != [], "the new one stays"
    again = build(second, settings_=worker, out=tmp_path / "out3")
    assert again.reused_from == report.build_id, "and answers the identical build"
