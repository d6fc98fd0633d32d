"""Size budget and eviction, usage accounting, verify, and many processes sharing one store."""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from pathlib import Path

import pytest

from gocaas.cache import Store, gc, usage, verify
from gocaas.cache.diskspace import SHORT_MARK, DiskWatch, MinFree, free_space
from gocaas.cache.maintenance import LOW_WATER, auto_gc
from gocaas.cache.store import CacheError
from tests.cache.conftest import age, sha

KB = 1024


def _fill(store: Store, count: int, size: int = 10 * KB, start: int = 0) -> list[bytes]:
    keys = []
    for i in range(start, start + count):
        body = bytes([i]) * size
        key = sha(b"action %d" % i)
        store.put("default", key, sha(body), body)
        keys.append(key)
    return keys


def test_gc_holds_the_budget_and_keeps_recently_used(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    keys = _fill(store, 20)
    for i, key in enumerate(keys):  # key 0 the oldest
        age(store, "default", key, 5 * 3600 - i * 60)
    used = keys[:3]
    for key in used:  # the three oldest are used again: a hit refreshes them
        assert store.get("default", key) is not None
    budget = 100 * KB
    result = gc(store, budget)
    assert result.total_before > 200 * KB
    assert result.total_after <= budget
    assert usage(store) == result.total_after
    assert (tmp_path / "s" / "usage").read_text().strip() == str(result.total_after)
    for key in used:
        assert store.get("default", key) is not None, "recently used entries survive"
    survivors = [k for k in keys if store.get("default", k) is not None]
    assert survivors[:3] == used
    assert survivors[3:] == keys[-len(survivors) + 3 :], "the rest survive newest first"
    assert result.removed_objects == 20 - len(survivors)


def test_gc_never_removes_what_was_used_within_min_age(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", min_age_s=3600)
    keys = _fill(store, 10)
    for key in keys[:5]:
        age(store, "default", key, 2 * 3600)
    result = gc(store, 10 * KB)
    assert result.removed_objects == 5
    assert all(store.get("default", k) is not None for k in keys[5:])
    assert result.kept_young_bytes > 0 and result.total_after > 10 * KB, "the budget is soft"


def test_gc_drops_dangling_entries_and_stale_temp_files(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", min_age_s=60)
    keys = _fill(store, 2)
    entry = store.get("default", keys[0])
    assert entry is not None
    Path(store.path(entry.output_id)).unlink()
    stale = Path(store.tmp_dir) / "12345-0"
    stale.write_bytes(b"half a body")
    fresh = Path(store.tmp_dir) / "12345-1"
    fresh.write_bytes(b"being written")
    age(store, "default", keys[1], 3600)
    old = time.time() - 3600
    os.utime(store.action_path("default", keys[0]), (old, old))
    os.utime(stale, (old, old))
    result = gc(store, None)
    assert result.removed_actions == 1 and result.removed_tmp == 1
    assert not Path(store.action_path("default", keys[0])).exists()
    assert fresh.exists() and store.get("default", keys[1]) is not None


def test_usage_estimate_marks_the_store_over_budget(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", max_size=100 * KB)
    _fill(store, 5)  # accounted as it goes: every tenth of the budget
    assert store.usage.add(0) == 50 * KB and not store.over_budget
    _fill(store, 5, start=0)  # the same objects again: nothing new
    assert store.usage.add(0) == 50 * KB
    _fill(store, 6, start=5)
    assert store.over_budget
    gc(store, 90 * KB, min_age_s=0)
    assert not store.over_budget
    assert store.usage.add(0) == usage(store) <= 90 * KB


def test_bytes_added_while_a_gc_scans_are_kept_in_the_estimate(tmp_path: Path) -> None:
    # A gc measures the store by scanning it; writers that add meanwhile must not be forgotten, or the
    # estimate stays low and the store grows past its budget unnoticed.
    store = Store(tmp_path / "s", max_size=100 * KB)
    store.usage.write(40 * KB)
    before = store.usage.add(0)
    store.usage.add(30 * KB)  # another process's puts, landing after the scan began
    assert store.usage.replace(40 * KB, before) == 70 * KB
    assert store.usage.replace(10 * KB, store.usage.add(0)) == 10 * KB  # nothing added meanwhile


MIB = 1024 * KB


def _lru_fill(store: Store, count: int, used: int = 0) -> list[bytes]:
    """count 1 MiB entries, the first the oldest; then the first `used` of them used again (a hit
    refreshes them), so the least recently used are the rest, in order."""
    keys = _fill(store, count, size=MIB)
    for i, key in enumerate(keys):
        age(store, "default", key, 5 * 3600 - i * 60)
    for key in keys[:used]:
        assert store.get("default", key) is not None
    return keys


def _entries_for(nbytes: int, store: Store, key: bytes) -> int:
    """How many 1 MiB entries (object and action entry) must go to free nbytes."""
    per_entry = MIB + Path(store.action_path("default", key)).stat().st_size
    return -(-nbytes // per_entry)


def test_gc_frees_the_disk_down_to_min_free_oldest_first(small_disk: Path) -> None:
    store = Store(small_disk / "s", max_size=None)
    keys = _lru_fill(store, 12, used=2)  # 12 of the 16 MiB
    keep = MinFree(nbytes=6 * MIB)
    short = 6 * MIB - free_space(store.root)[0]
    assert short > 0
    result = gc(store, min_free=keep)
    assert short <= result.disk_short <= short + 8 * KB  # and its lock file's page
    gone = [k for k in keys if store.get("default", k) is None]
    expected = _entries_for(result.disk_short, store, keys[0])
    assert gone == keys[2 : 2 + expected], "the least recently used, no more"
    assert free_space(store.root)[0] >= 6 * MIB
    assert not (Path(store.root) / SHORT_MARK).exists(), "it got there"
    assert gc(store, min_free=keep).removed_objects == 0, "and there it stays"


def test_gc_that_cannot_reach_min_free_keeps_young_entries_and_says_so(small_disk: Path) -> None:
    store = Store(small_disk / "s", max_size=None, min_age_s=3600)
    keys = _fill(store, 4, size=MIB)
    for key in keys[:2]:
        age(store, "default", key, 2 * 3600)
    keep = MinFree(fraction=0.99)  # more than the whole store
    result = gc(store, min_free=keep)
    assert result.removed_objects == 2 and result.kept_young_bytes > 0
    assert [store.get("default", k) is not None for k in keys] == [False, False, True, True]
    assert (Path(store.root) / SHORT_MARK).exists()
    assert not DiskWatch(store.root, keep).short(), "no gc again right away: it did what it could"
    old = time.time() - 120
    os.utime(Path(store.root) / SHORT_MARK, (old, old))
    assert DiskWatch(store.root, keep).short(), "but again after a while"


def test_the_disk_under_min_free_marks_the_store_for_a_gc(small_disk: Path) -> None:
    store = Store(small_disk / "s", min_age_s=60, min_free=MinFree(fraction=0.25))  # 4 of 16 MiB
    old = _lru_fill(store, 8)
    store.flush_usage()  # what every writer does every 64 MiB and at its end
    assert not store.over_budget, "8 MiB free"
    new = _fill(store, 5, size=MIB, start=100)
    store.flush_usage()
    assert store.over_budget, "3 MiB free: under min_free, with the budget (10 GiB) far away"
    short = 4 * MIB - free_space(store.root)[0]
    result = auto_gc(store)  # what the writer then runs
    assert short <= result.disk_short <= short + 8 * KB and not store.over_budget
    total, short = result.total_before, result.disk_short
    low_water = total - int((total - short) * LOW_WATER)  # the shortfall, and a tenth of the rest
    gone = [k for k in old if store.get("default", k) is None]
    assert gone == old[: _entries_for(low_water, store, new[0])]
    assert all(store.get("default", k) is not None for k in new), "used within min_age"
    assert free_space(store.root)[0] >= 4 * MIB


def test_min_free_reads_sizes_and_percentages() -> None:
    assert MinFree.parse("5%") == MinFree(fraction=0.05)
    assert MinFree.parse("2G") == MinFree(nbytes=2 << 30)
    assert MinFree.parse("0") is None and MinFree.parse("0%") is None
    for text in ("5%", "12.5%", "2G", "1536M", "1000"):
        assert str(MinFree.parse(text)) == text
    assert MinFree(fraction=0.1).bytes_on(1000) == 100
    for bad in ("100%", "-1%", "nan%", "five", "%", "-2G"):
        with pytest.raises(ValueError, match=f"bad free space '{bad}'"):
            MinFree.parse(bad)


def test_verify_on_a_sound_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    _fill(store, 4)
    result = verify(store)
    assert (result.objects, result.corrupt_objects, result.actions, result.bad_actions) == (4, 0, 4, 0)
    assert result.bytes == 40 * KB and result.removed == []


# -- many processes at once


def _bodies() -> dict[bytes, bytes]:
    rng = random.Random(7)
    sizes = [0, 1, 100, 4 * KB, 64 * KB, 1 << 20]
    return {sha(b"key %d" % i): rng.randbytes(sizes[i % len(sizes)]) for i in range(24)}


def _worker(root: str, seed: int, rounds: int) -> list[str]:
    """Put and get the same keys as the other workers; return what looked wrong."""
    store = Store(root)
    bodies = _bodies()
    keys = list(bodies)
    rng = random.Random(seed)
    problems = []
    for _ in range(rounds):
        key = rng.choice(keys)
        if rng.random() < 0.5:
            store.put("default", key, sha(bodies[key]), bodies[key])
        entry = store.get("default", key)
        if entry is None:
            continue
        with open(store.path(entry.output_id), "rb") as f:  # noqa: PTH123
            data = f.read()
        if entry.output_id != sha(bodies[key]) or entry.size != len(bodies[key]) or data != bodies[key]:
            problems.append(f"{key.hex()[:8]}: got {entry!r}, {len(data)} bytes")
    return problems


def test_many_processes_putting_and_getting_the_same_keys(tmp_path: Path) -> None:
    root = str(tmp_path / "s")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(8) as pool:
        results = pool.starmap(_worker, [(root, seed, 150) for seed in range(8)])
    assert [p for r in results for p in r] == []
    store = Store(root)
    bodies = _bodies()
    for key, body in bodies.items():
        entry = store.get("default", key)
        assert entry is not None and entry.output_id == sha(body)
    result = verify(store)
    assert result.corrupt_objects == 0 and result.bad_actions == 0
    assert result.objects == len(set(bodies.values()))
    assert not list(Path(store.tmp_dir).iterdir()), "no temp files left behind"


def test_clear_drops_one_namespace_whole_and_keeps_the_objects(tmp_path: Path) -> None:
    from gocaas.cache.maintenance import clear_namespace
    from gocaas.cache.traces import TraceStore

    store = Store(tmp_path / "s")
    keys = _fill(store, 5)
    store.put("other", keys[0], sha(bytes([0]) * 10 * KB), bytes([0]) * 10 * KB)
    traces = TraceStore(store)
    traces.add("default", keys)
    traces.add("other", keys[:1])
    objects = sorted((tmp_path / "s" / "objects").rglob("*"))

    assert clear_namespace(store, "default") == 5
    assert all(store.get("default", key) is None for key in keys)
    assert store.get("other", keys[0]) is not None, "another namespace is left alone"
    assert TraceStore(store).manifest("default", keys[0]) == []
    assert TraceStore(store).manifest("other", keys[0]) != []
    assert sorted((tmp_path / "s" / "objects").rglob("*")) == objects
    assert not any((tmp_path / "s" / "tmp").iterdir()), "nothing left behind"
    assert clear_namespace(store, "default") == 0  # already empty
    store.put("default", keys[1], sha(bytes([1]) * 10 * KB), bytes([1]) * 10 * KB)
    assert store.get("default", keys[1]) is not None, "the namespace is usable again"
    for bad in ("../other", ".hidden", ""):
        with pytest.raises(CacheError, match="bad namespace"):
            clear_namespace(store, bad)
    with pytest.raises(CacheError, match="read-only"):
        clear_namespace(Store(tmp_path / "s", read_only=True), "other")
    assert store.get("other", keys[0]) is not None
