"""`gocaas cache stats`: the counters of every build's go commands added up, per tier."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from gocaas.cache.diskspace import free_space
from gocaas.cache.store import Store
from gocaas.stages.gocmd import CACHE_STATS
from tests.cache.conftest import LiveServer, Session, age, python_env, read_stats, remote_args, sha


def stats_output(home: Path) -> dict[str, str]:
    env = python_env(GOCAAS_HOME=str(home), COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "gocaas", "cache", "stats"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 2 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows


def test_stats_add_up_every_build_per_tier(tmp_path: Path, live_server: Callable[..., LiveServer]) -> None:
    home = tmp_path / "home"
    local_stats = home / "builds" / "b1" / CACHE_STATS
    local_stats.parent.mkdir(parents=True)
    a = Session(home / "cache", env=python_env(GOCAAS_CACHEPROG_STATS=str(local_stats)))
    for i in range(3):
        a.get(sha(f"a{i}".encode()))
        a.put(sha(f"a{i}".encode()), f"body {i}".encode() * 100)
    assert a.get(sha(b"a0"))["Size"] == 600
    assert a.close() == 0
    rows = stats_output(home)
    assert rows["go commands"] == "1" and rows["gets"].startswith("4: 1 hits (25.0%), 3 misses")
    assert rows["local disk"].startswith("1 hits") and rows["puts"].startswith("3 (")
    assert "remote" not in rows, "no remote tier was used"
    assert "damaged cache" not in rows

    refill = Session(home / "cache", "--refill", env=python_env(GOCAAS_CACHEPROG_STATS=str(local_stats)))
    assert refill.get(sha(b"a0"))["Miss"] is True
    assert refill.close() == 0
    rows = stats_output(home)
    assert rows["damaged cache"] == "1 go commands re-run with their entries rebuilt"

    server = live_server()
    remote_stats = home / "builds" / "b2" / CACHE_STATS
    remote_stats.parent.mkdir(parents=True)
    env = python_env(GOCAAS_CACHEPROG_STATS=str(remote_stats))
    uploader = Session(tmp_path / "uploader", *remote_args(server.url), env=env)
    uploader.put(sha(b"r"), b"remote body" * 1000)
    assert uploader.close() == 0
    fresh = Session(tmp_path / "fresh", *remote_args(server.url), env=env)
    assert fresh.get(sha(b"r"))["Size"] == 11000
    assert fresh.close() == 0
    up, down = read_stats(remote_stats)
    rows = stats_output(home)
    assert rows["go commands"] == "4" and rows["gets"].startswith("6: 2 hits (33.3%), 4 misses")
    assert (
        rows["remote"]
        == f"1 hits, 0 misses, 10.7 KiB down, {up['remote_requests'] + down['remote_requests']} requests"
    )
    assert rows["prefetch"].startswith("1 objects (10.7 KiB), 1 gets waited for them, 1 traces sent")
    assert rows["uploads"].startswith("1 (10.7 KiB up)") and rows["remote failures"].startswith("0 errors")


def test_gc_says_what_it_kept_over_the_budget_and_why(tmp_path: Path) -> None:
    home = tmp_path / "home"
    session = Session(home / "cache")
    session.put(sha(b"young"), b"just written" * 10_000)
    assert session.close() == 0
    proc = subprocess.run(
        [sys.executable, "-m", "gocaas", "cache", "gc", "--max-size", "1K"],
        env=python_env(GOCAAS_HOME=str(home), COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    # Nothing goes (it was used just now), and the line says so instead of a bare "removed 0 objects".
    assert "removed 0 objects" in proc.stdout and "over the budget: used in the last 2 h" in proc.stdout
    assert (home / "cache" / "objects" / sha(b"just written" * 10_000).hex()[:2]).is_dir()


def cache_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gocaas", "cache", *args],
        env=python_env(GOCAAS_HOME=str(home), COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gc_by_hand_leaves_min_free_on_the_disk(small_disk: Path) -> None:
    home = small_disk / "home"
    store = Store(home / "cache", max_size=None)
    keys = [sha(b"old %d" % i) for i in range(8)]
    for i, key in enumerate(keys):
        body = bytes([i]) * (1 << 20)
        store.put("default", key, sha(body), body)
        age(store, "default", key, 3 * 3600 - i)
    rows = stats_output(home)
    free = free_space(str(home / "cache"))[0]
    disk = f"the disk has {free / (1 << 20):.1f} MiB free of 16.0 MiB, 819.2 KiB (5%) kept free"
    assert rows["budget"] == f"10.0 GiB; {disk}"
    bad = cache_cli(home, "gc", "--min-free", "lots")
    assert bad.returncode == 2 and "--min-free: bad free space 'lots'" in bad.stderr
    proc = cache_cli(home, "gc", "--min-free", "12M")
    assert proc.returncode == 0, proc.stderr
    assert "short of 12M free)" in proc.stdout, proc.stdout
    assert free_space(str(home / "cache"))[0] >= 12 << 20
    gone = [k for k in keys if store.get("default", k) is None]
    assert gone == keys[: len(gone)] and 0 < len(gone) < len(keys)


def cache_clear(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gocaas", "cache", "clear", *args],
        env=python_env(GOCAAS_HOME=str(home), COLUMNS="200"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def get_once(home: Path, action_id: bytes) -> dict[str, object]:
    """One get in a cacheprog session of its own, closed after."""
    session = Session(home / "cache")
    try:
        return session.get(action_id)
    finally:
        session.close()


def test_clear_asks_then_drops_the_namespaces_entries(tmp_path: Path) -> None:
    home = tmp_path / "home"
    session = Session(home / "cache")
    session.put(sha(b"a"), b"body" * 100)
    assert session.close() == 0
    result = home / "results" / "default" / "some-key" / "report.json"
    result.parent.mkdir(parents=True)
    result.write_text("{}")

    refused = cache_clear(home)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert get_once(home, sha(b"a"))["Size"] == 400, "nothing dropped without --yes"

    done = cache_clear(home, "--yes")
    assert done.returncode == 0, done.stderr
    assert "dropped 1 entries of namespace 'default'" in done.stdout
    assert get_once(home, sha(b"a"))["Miss"] is True
    assert result.exists(), "the result cache is kept unless --results"
    assert cache_clear(home, "--yes", "--results").returncode == 0
    assert not (home / "results" / "default").exists() and not list((home / "results").iterdir())
    bad = cache_clear(home, "--yes", "--namespace", "../x")
    assert bad.returncode != 0 and "bad namespace" in bad.stderr
