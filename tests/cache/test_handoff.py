"""The cache program outside the go command's sandbox (gocaas.go.outside, gocaas.cache.handoff): the real go
command reaches it through the handoff and gets the same cache; a program nobody reaches exits; one that
cannot start says why; one whose gocaas died stops waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gocaas.cache.attacher import attacher_path
from gocaas.cache.command import cacheprog_argv
from gocaas.go.outside import cacheprog_outside
from gocaas.pipeline.cachedamage import cacheprog_failure
from gocaas.settings import Settings
from tests.cache.conftest import go, go_env, read_stats
from tests.cache.test_go import _compiles, _module
from tests.conftest import process_gone


@pytest.fixture(params=["python", "attacher"])
def reach(request: pytest.FixtureRequest, settings: Settings) -> Path | None:
    """What the go command starts to reach the program: handoff.py, or the compiled attacher."""
    return attacher_path(settings.helpers_dir) if request.param == "attacher" else None


def test_the_go_command_is_served_by_the_program_outside(
    tmp_path: Path, warm_store: Path, reach: Path | None
) -> None:
    module = _module(tmp_path / "m", "handed over")
    stats = tmp_path / "stats.jsonl"
    env = go_env(tmp_path, "", GOCAAS_CACHEPROG_STATS=str(stats))
    errors: list[str] = []
    for _ in range(2):
        with cacheprog_outside(cacheprog_argv(warm_store), env, errors.append, attacher=reach) as handoff:
            assert str(handoff.directory) in handoff.gocacheprog
            assert handoff.gocacheprog.startswith(str(reach) if reach else sys.executable)
            assert "--dir" not in handoff.gocacheprog, "the go command's environment names no store"
            built = go(
                ["build", "-x", "-o", str(tmp_path / "bin"), "."],
                module,
                env | {"GOCACHEPROG": handoff.gocacheprog},
            )
        assert handoff.program.wait(timeout=30) == 0
        assert not handoff.directory.exists(), "the socket's directory is removed"
    first, second = read_stats(stats)
    assert first["puts"] >= 1 and first["hits"] > 50, "std came from the warm store"
    assert second["misses"] == 0 and second["hits"] == second["gets"] > 50
    assert _compiles(built.stderr) == [], "the second build compiled nothing"
    assert errors == []


def test_a_program_the_go_command_never_reached_exits(tmp_path: Path, warm_store: Path) -> None:
    with cacheprog_outside(cacheprog_argv(warm_store), go_env(tmp_path, ""), print) as handoff:
        pass  # the go command failed before it asked for its cache
    assert handoff.program.wait(timeout=10) == 0


def test_a_program_that_cannot_start_says_why(tmp_path: Path, warm_store: Path, reach: Path | None) -> None:
    argv = cacheprog_argv(warm_store, extra=["--max-size", "lots"])
    errors: list[str] = []
    env = go_env(tmp_path, "")
    module = _module(tmp_path / "m", "never built")
    with cacheprog_outside(argv, env, errors.append, attacher=reach) as handoff:
        done = subprocess.run(
            ["go", "build", "-o", os.devnull, "."],
            cwd=module,
            env=env | {"GOCACHEPROG": handoff.gocacheprog},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode != 0
    # gocaas then runs the command without it. What go says depends on whether the program had exited
    # before the handoff connected ("cannot reach the cache program") or took the connection and then
    # exited (go: the program's pipe closed): both are the cache program's failure.
    assert cacheprog_failure(done.stderr), done.stderr
    assert len(errors) == 1 and "--max-size" in errors[0] and "lots" in errors[0], errors


HOLDER = """
import sys, time
import pytest

from gocaas.cache.attacher import attacher_path
from gocaas.cache.command import cacheprog_argv
from gocaas.go.outside import cacheprog_outside
with cacheprog_outside(cacheprog_argv(sys.argv[1]), {}, print) as handoff:
    print(handoff.program.pid, flush=True)
    time.sleep(600)
"""


def test_a_waiting_program_stops_when_gocaas_dies(tmp_path: Path, warm_store: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warm_store)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    pid = int(holder.stdout.readline())
    assert not process_gone(pid)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    deadline = time.monotonic() + 15
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_gone(pid), "the orphaned program still waits for a go command that will never come"
