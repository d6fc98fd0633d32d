"""The real go command through cacheprog --remote: a fresh worker served by a warm remote, read-only modes
that write nothing on the server, and a remote that dies or hangs in the middle of a build."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gocaas.cache import cacheprog_command
from tests.cache.conftest import (
    HELLO,
    READ_TOKEN,
    LiveServer,
    ServerProcess,
    go,
    go_env,
    read_stats,
    remote_args,
)
from tests.cache.test_go import _compiles, _module, _snapshot


def remote_env(tmp: Path, local: Path, url: str, *extra: str, token: str | None = None) -> dict[str, str]:
    args = remote_args(url, *extra)
    if token is not None:
        args[args.index("--token") + 1] = token
    stats = str(tmp / "stats.jsonl")
    return go_env(tmp, cacheprog_command(local, extra=args), GOCAAS_CACHEPROG_STATS=stats)


@pytest.fixture
def warm_remote(warm_store: Path, live_server: Callable[..., LiveServer]) -> LiveServer:
    """The session's warm store served read-only (nothing touched: other tests snapshot it)."""
    return live_server(warm_store, read_only=True)


def test_a_fresh_worker_is_served_by_the_remote(tmp_path: Path, warm_remote: LiveServer) -> None:
    local = tmp_path / "fresh"
    env = remote_env(tmp_path, local, warm_remote.url)
    first = go(["build", "-x", "-o", str(tmp_path / "hello"), "."], HELLO, env)
    compiled = [line for line in _compiles(first.stderr) if "/compile " in line]
    assert compiled == [], "std and the module's package came from the remote (the link may run)"
    (s1,) = read_stats(tmp_path / "stats.jsonl")
    assert s1["remote_hits"] > 50 and s1["remote_hits"] == s1["hits"] and s1["misses"] <= 2
    assert s1["remote_bytes_down"] == s1["hit_bytes"] and s1["remote_errors"] == 0
    assert len(list((local / "objects").rglob("*"))) > 50, "the local store was filled"

    built = (tmp_path / "hello").read_bytes()
    go(["build", "-o", str(tmp_path / "hello"), "."], HELLO, env)
    s2 = read_stats(tmp_path / "stats.jsonl")[1]
    assert s2["hits"] == s2["gets"] and s2["remote_hits"] == 0 and s2["remote_requests"] == 0
    assert (tmp_path / "hello").read_bytes() == built


def test_read_only_never_writes_the_server(
    tmp_path: Path, warm_store: Path, live_server: Callable[..., LiveServer]
) -> None:
    """A read token (the server refuses its PUTs), and cacheprog --read-only (no puts at all): after real
    builds that compile something new, the server's store is exactly as it was."""
    remote_store = tmp_path / "remote"
    shutil.copytree(warm_store, remote_store)
    server = live_server(remote_store, read_token=READ_TOKEN)
    before = _snapshot(remote_store)
    module = _module(tmp_path / "m", "read-only remote")

    env = remote_env(tmp_path, tmp_path / "local", server.url, token=READ_TOKEN)
    built = go(["build", "-x", "-o", str(tmp_path / "bin"), "."], module, env)
    assert _compiles(built.stderr), "its own package was new: compiled, put locally, refused remotely"
    (line,) = read_stats(tmp_path / "stats.jsonl")
    assert line["puts"] >= 1 and line["uploads"] == 0 and line["remote_hits"] > 50

    env = remote_env(tmp_path, tmp_path / "local-ro", server.url, "--read-only")
    go(["build", "-o", str(tmp_path / "bin2"), "."], module, env)
    line = read_stats(tmp_path / "stats.jsonl")[1]
    assert line["read_only"] is True and line["puts"] == 0 and line["remote_hits"] > 50
    assert not (tmp_path / "local-ro").exists()
    assert _snapshot(remote_store) == before


def test_the_remote_killed_in_the_middle_of_a_build(tmp_path: Path, warm_store: Path) -> None:
    server = ServerProcess(warm_store, "--read-only")
    try:
        env = remote_env(tmp_path, tmp_path / "local", server.url)
        build = subprocess.Popen(
            ["go", "build", "-o", str(tmp_path / "hello"), "."],
            cwd=HELLO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while server.status()["ac_hits"] < 40 and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        running = build.poll() is None
        server.kill()
        _, err = build.communicate(timeout=600)
    finally:
        server.kill()
    assert build.returncode == 0, err
    assert running, "the build was over before the server could be killed"
    (line,) = read_stats(tmp_path / "stats.jsonl")
    assert line["remote_hits"] >= 30 and line["breaker_opens"] == 1 and line["misses"] >= 1
    assert line["errors"] == 0
    assert subprocess.run([str(tmp_path / "hello")], capture_output=True, check=True).returncode == 0


@pytest.fixture
def hanging_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def _packages(dest: Path, n: int) -> Path:
    """A module of its own with n packages: n + 2 or more gets that miss a store warm with std."""
    dest.mkdir()
    (dest / "go.mod").write_text("module example.com/hang\n\ngo 1.21\n")
    imports = "".join(f'\t"example.com/hang/p{i}"\n' for i in range(n))
    calls = " + ".join(f"p{i}.F()" for i in range(n))
    main = f'package main\n\nimport (\n\t"fmt"\n{imports})\n\nfunc main() {{ fmt.Println({calls}) }}\n'
    (dest / "main.go").write_text(main)
    for i in range(n):
        (dest / f"p{i}").mkdir()
        (dest / f"p{i}" / "p.go").write_text(f"package p{i}\n\nfunc F() int {{ return {i} }}\n")
    return dest


def test_a_hanging_remote_is_bypassed(tmp_path: Path, warm_store: Path, hanging_url: str) -> None:
    local = tmp_path / "local"
    shutil.copytree(warm_store, local)
    module = _packages(tmp_path / "m", 6)
    env = remote_env(tmp_path, local, hanging_url, "--remote-timeout", "0.5", "--flush-timeout", "1")
    go(["build", "-o", str(tmp_path / "bin"), "."], module, env)
    (line,) = read_stats(tmp_path / "stats.jsonl")
    assert line["misses"] >= 7 and line["puts"] >= 7
    assert line["breaker_opens"] == 1 and line["remote_requests"] <= 3 + 4
    assert line["remote_skipped"] >= 1 and line["uploads"] == 0
    assert line["duration_s"] < 60
