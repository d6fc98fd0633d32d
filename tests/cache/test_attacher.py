"""The compiled attacher (gocaas.cache.attacher): built by go, in the background or at once; hands the go
command to a resident program that holds the same key, and otherwise runs the Python program in its place."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gocaas.cache.attacher import (
    AttacherBuildError,
    attacher_path,
    build_attacher,
    find_attacher,
    resident_command,
)
from gocaas.cache.command import cacheprog_argv, go_quote
from gocaas.cache.resident_server import running
from gocaas.settings import Settings
from tests.cache.conftest import go_env, read_stats
from tests.cache.test_resident import IDLE, _hello, _listening, _socket, _wait_for
from tests.conftest import CliFn, process_gone

GO = Path(shutil.which("go") or "go")


@pytest.fixture(scope="session")
def attacher(settings: Settings) -> Path:
    """The session's attacher (tests/conftest.py builds it with the session's settings)."""
    path = attacher_path(settings.helpers_dir)
    assert os.access(path, os.X_OK)
    return path


def _resident_argv(store: Path) -> list[str]:
    return cacheprog_argv(store, extra=["--resident", "--resident-idle", IDLE])


def _attached_env(tmp: Path, store: Path, runtime: Path, attacher: Path) -> tuple[dict[str, str], list[str]]:
    """A go command's environment whose GOCACHEPROG is the attacher to a resident program over store."""
    env = go_env(tmp, "", XDG_RUNTIME_DIR=str(runtime), GOCAAS_CACHEPROG_STATS=str(tmp / "stats.jsonl"))
    command = resident_command(attacher, _resident_argv(store), env)
    return env | {"GOCACHEPROG": go_quote(command)}, command


def test_go_commands_reach_the_resident_program_through_the_attacher(
    tmp_path: Path, warm_store: Path, runtime: Path, attacher: Path
) -> None:
    env, command = _attached_env(tmp_path, warm_store, runtime, attacher)
    assert command[:2] == [str(attacher), "resident"]
    sock, key = Path(command[2]), Path(command[3])
    assert key.stat().st_mode & 0o077 == 0, "the key (which may hold a token) is this user's alone"
    assert sock.parent == runtime / "gocaas"

    first = _hello(tmp_path, env, "first")  # nobody to attach to: the Python program serves it
    _wait_for(lambda: _listening(sock), "the resident program the Python program started")
    second = _hello(tmp_path, env, "second")
    third = _hello(tmp_path, env, "third")

    assert first == second == third
    stats = read_stats(tmp_path / "stats.jsonl")
    assert [s.get("resident", False) for s in stats] == [False, True, True], stats
    assert stats[1]["pid"] == stats[2]["pid"] != stats[0]["pid"]
    assert stats[2]["misses"] <= 1 and stats[2]["hits"] > 50


def _run_attacher(command: list[str], fallback: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run the attacher as the go command would (stdin, stdout: pipes), with fallback as its program."""
    argv = [*command[:5], *fallback]
    return subprocess.run(argv, input=b"", capture_output=True, timeout=30, check=False)


def test_the_attacher_runs_the_program_unless_the_resident_one_takes_the_go_command(
    tmp_path: Path, warm_store: Path, runtime: Path, attacher: Path
) -> None:
    env, command = _attached_env(tmp_path, warm_store, runtime, attacher)
    fallback = ["/bin/echo", "served by the program"]
    alone = _run_attacher(command, fallback)
    assert alone.returncode == 0 and alone.stdout == b"served by the program\n", "no resident program yet"

    _hello(tmp_path, env, "start it")
    sock, key = Path(command[2]), Path(command[3])
    _wait_for(lambda: _listening(sock), "the resident program")
    taken = _run_attacher(command, fallback)
    assert taken.returncode == 0
    hello = json.loads(taken.stdout.splitlines()[0])  # the resident program's, on our stdout
    assert "get" in hello["KnownCommands"] and b"served by the program" not in taken.stdout

    good = key.read_bytes()
    key.write_bytes(good.replace(b"ro=False", b"ro=True"))  # another program's options: refused
    refused = _run_attacher(command, fallback)
    assert refused.stdout == b"served by the program\n"
    key.write_bytes(good)


def test_without_a_program_to_run_the_attacher_says_what_failed(tmp_path: Path, attacher: Path) -> None:
    missing = tmp_path / "no-such-python"
    done = subprocess.run(
        [str(attacher), "resident", str(tmp_path / "s"), str(tmp_path / "k"), "default", str(missing)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert str(missing) in done.stderr and done.stderr.startswith("gocaas cacheprog:")
    usage = subprocess.run([str(attacher), "resident"], capture_output=True, text=True, check=False)
    assert usage.returncode == 1 and "usage" in usage.stderr


def test_a_command_line_that_is_not_a_resident_program_is_refused(tmp_path: Path, attacher: Path) -> None:
    with pytest.raises(ValueError, match="not --resident"):
        resident_command(attacher, cacheprog_argv(tmp_path), {})
    with pytest.raises(ValueError, match="not a cache program"):
        resident_command(attacher, ["/bin/true", "--resident"], {})


def _wait_built(path: Path, marker: Path) -> None:
    _wait_for(lambda: not marker.exists(), "the background build", timeout=180)
    assert os.access(path, os.X_OK), "the build left no attacher"


def test_the_first_use_builds_the_attacher_in_the_background(tmp_path: Path, settings: Settings) -> None:
    helpers = tmp_path / "helpers"
    path = attacher_path(helpers)
    marker = path.with_name(path.name + ".building")
    assert find_attacher(helpers, GO, settings.gocache) is None, "not built yet: Python's program for now"
    assert marker.exists()
    assert find_attacher(helpers, GO, settings.gocache) is None, "still building"
    _wait_built(path, marker)
    assert find_attacher(helpers, GO, settings.gocache) == path
    assert [p.name for p in helpers.iterdir()] == [path.name], "no temporary files left"
    out = subprocess.run([str(path)], capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "usage" in out.stderr


def test_a_build_that_failed_is_tried_again_only_later(tmp_path: Path, settings: Settings) -> None:
    helpers, no_go = tmp_path / "helpers", tmp_path / "no-go"
    path = attacher_path(helpers)
    marker = path.with_name(path.name + ".building")
    assert find_attacher(helpers, no_go, settings.gocache) is None
    _wait_for(lambda: marker.exists() and str(no_go) in marker.read_text(), "the failure in the marker")
    reason = marker.read_text()
    assert find_attacher(helpers, GO, settings.gocache) is None and marker.read_text() == reason
    assert not path.exists()

    past = time.time() - 2 * 3600
    os.utime(marker, (past, past))  # long ago: tried again
    assert find_attacher(helpers, GO, settings.gocache) is None
    _wait_built(path, marker)


def test_a_go_that_cannot_build_it_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\necho 'go: this go cannot build' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(AttacherBuildError, match="exited 3: go: this go cannot build"):
        build_attacher(fake, attacher_path(tmp_path / "helpers"), tmp_path / "gocache")
    assert not attacher_path(tmp_path / "helpers").exists()


def test_gocacheprog_prints_what_go_commands_run_by_hand_start(
    tmp_path: Path, warm_store: Path, runtime: Path, cli: CliFn, settings: Settings
) -> None:
    env = {"XDG_RUNTIME_DIR": str(runtime)}  # the session's settings, GOCAAS_HOME included
    flags = ["--dir", str(warm_store), "--resident", "--resident-idle", IDLE]
    printed = cli("cache", "gocacheprog", *flags, env=env)
    assert printed.returncode == 0, printed.stderr
    value = printed.stdout.strip()
    assert value.startswith(f"{attacher_path(settings.helpers_dir)} resident {runtime}/gocaas/cp-")

    go_cmd = go_env(tmp_path, value, XDG_RUNTIME_DIR=str(runtime), GOCAAS_CACHEPROG_STATS=str(tmp_path / "s"))
    first = _hello(tmp_path, go_cmd, "first")
    _wait_for(lambda: _listening(Path(value.split()[2])), "the resident program")
    assert _hello(tmp_path, go_cmd, "second") == first
    assert [s.get("resident", False) for s in read_stats(tmp_path / "s")] == [False, True]

    plain = cli("cache", "gocacheprog", "--dir", str(warm_store), env=env)
    assert plain.returncode == 0 and "resident" not in plain.stdout and "launch.py --dir" in plain.stdout
    bad = cli("cache", "gocacheprog", "--max-size", "lots", env=env)
    assert bad.returncode == 2 and "--max-size" in bad.stderr and "lots" in bad.stderr
    internal = cli("cache", "gocacheprog", "--resident-serve", env=env)
    assert internal.returncode == 2 and "--resident-serve" in internal.stderr, internal.stderr


@pytest.mark.parametrize("front", ["python", "attacher"])
def test_a_stopped_resident_program_loses_its_socket_and_is_replaced(
    tmp_path: Path, warm_store: Path, runtime: Path, attacher: Path, front: str
) -> None:
    if front == "attacher":
        env, _ = _attached_env(tmp_path, warm_store, runtime, attacher)
    else:
        env = go_env(
            tmp_path,
            go_quote(_resident_argv(warm_store)),
            XDG_RUNTIME_DIR=str(runtime),
            GOCAAS_CACHEPROG_STATS=str(tmp_path / "stats.jsonl"),
        )
    first = _hello(tmp_path, env, "first")
    sock = _socket(warm_store, runtime, "--resident-idle", IDLE)
    _wait_for(lambda: _listening(sock), "the resident program")
    (stuck,) = running(str(runtime / "gocaas"))
    os.kill(stuck.pid, signal.SIGSTOP)
    try:
        assert _hello(tmp_path, env, "while stopped") == first, "served after the ack's timeout"
        # That go command took the stuck one's socket and lock, and started another beside it.
        _wait_for(lambda: _listening(sock), "a replacement, while the stuck one is still stopped")
        assert _hello(tmp_path, env, "served") == first
        (replacement,) = running(str(runtime / "gocaas"))
        assert replacement.pid != stuck.pid
    finally:
        os.kill(stuck.pid, signal.SIGCONT)
    _wait_for(lambda: process_gone(stuck.pid), "the stuck one to end once it runs (its socket is gone)")
    assert [r.pid for r in running(str(runtime / "gocaas"))] == [replacement.pid], "it left the new one's"
    assert _hello(tmp_path, env, "after") == first
    stats = read_stats(tmp_path / "stats.jsonl")
    assert [s.get("resident", False) for s in stats] == [False, False, True, True], stats
    assert stats[2]["pid"] == stats[3]["pid"] == replacement.pid
