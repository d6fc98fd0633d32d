"""The real go command with its build cache in a cacheprog store (the warm store of conftest.py)."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from gocaas.cache import Store, cacheprog_command, verify
from gocaas.cache.command import go_quote
from tests.cache.conftest import HELLO, PASSING, go, go_env, read_stats


def _module(dest: Path, greeting: str) -> Path:
    """examples/hello saying something of its own, so its package is new to the store."""
    shutil.copytree(HELLO, dest)
    main = dest / "main.go"
    main.write_text(main.read_text().replace("hello from gocaas", greeting))
    return dest


def _python_m(store: Path, *args: str) -> str:
    return go_quote([sys.executable, "-m", "gocaas.cache.prog", "--dir", str(store), *args])


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file's size, mtime and content hash (not atime: reading may set it)."""
    return {
        str(p.relative_to(root)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _compiles(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "/compile " in line or "/link " in line]


def test_second_build_is_served_from_the_store(tmp_path: Path, warm_store: Path) -> None:
    module = _module(tmp_path / "m", "second build")
    stats = tmp_path / "stats.jsonl"
    env = go_env(tmp_path, _python_m(warm_store), GOCAAS_CACHEPROG_STATS=str(stats))

    first = go(["build", "-x", "-o", str(tmp_path / "bin"), "."], module, env)
    assert _compiles(first.stderr), "the module's own package is new: compiled and linked"
    assert (tmp_path / "bin").exists()
    (s1,) = read_stats(stats)
    assert s1["misses"] >= 1 and s1["puts"] >= 1 and s1["hits"] > 50, "std came from the warm store"

    built = (tmp_path / "bin").read_bytes()
    second = go(["build", "-x", "-o", str(tmp_path / "bin"), "."], module, env)
    assert _compiles(second.stderr) == [], "nothing compiled, nothing linked: the binary is up to date"
    s2 = read_stats(stats)[1]
    assert s2["misses"] == 0 and s2["puts"] == 0 and s2["hits"] == s2["gets"] > 50
    assert (tmp_path / "bin").read_bytes() == built


def test_go_test_results_are_cached(tmp_path: Path, warm_store: Path) -> None:
    module = tmp_path / "passing"
    shutil.copytree(PASSING, module)
    env = go_env(tmp_path, cacheprog_command(warm_store))
    go(["test", "./..."], module, env)
    again = go(["test", "./..."], module, env)
    assert "(cached)" in again.stdout


def test_read_only_store_is_never_written(tmp_path: Path, warm_store: Path) -> None:
    module = _module(tmp_path / "m", "read only")
    stats = tmp_path / "stats.jsonl"
    before = _snapshot(warm_store)
    env = go_env(tmp_path, cacheprog_command(warm_store, read_only=True), GOCAAS_CACHEPROG_STATS=str(stats))
    built = go(["build", "-x", "-o", str(tmp_path / "bin"), "."], module, env)
    assert _compiles(built.stderr), "its own package was not in the store: built, and not put"
    assert _snapshot(warm_store) == before
    (line,) = read_stats(stats)
    assert line["read_only"] is True and line["puts"] == 0 and line["hits"] > 50


def test_corrupt_objects_are_rebuilt(tmp_path: Path, warm_store: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(warm_store, store)
    module = _module(tmp_path / "m", "corrupted")
    stats = tmp_path / "stats.jsonl"
    env = go_env(tmp_path, cacheprog_command(store), GOCAAS_CACHEPROG_STATS=str(stats))
    old = set(_snapshot(store / "objects"))
    go(["build", "-o", str(tmp_path / "bin"), "."], module, env)
    new = [store / "objects" / name for name in set(_snapshot(store / "objects")) - old]
    assert new
    for path in new:  # what this module added: its package archive, link inputs and the like
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    rebuilt = go(["build", "-x", "-o", str(tmp_path / "bin2"), "."], module, env)
    assert _compiles(rebuilt.stderr)
    assert read_stats(stats)[1]["corrupt"] >= 1
    assert (tmp_path / "bin2").read_bytes() == (tmp_path / "bin").read_bytes()
    result = verify(Store(store))
    assert result.corrupt_objects == 0 and result.bad_actions == 0, "bad files were removed and replaced"
