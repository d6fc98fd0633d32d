"""Go commands do not outlive a gocaas killed with SIGKILL (reaper.py): a Python process runs commands the
way gocaas does, is killed, and what it started must end with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from gocaas.go.toolchain import Toolchain

WATCHING = """
import subprocess, sys, time
from gocaas.go.reaper import REAPER
kept, doomed = (subprocess.Popen(["sleep", "120"], start_new_session=True) for _ in range(2))
REAPER.watch(kept.pid)
REAPER.watch(doomed.pid)
REAPER.release(kept.pid)  # waited for, as far as the reaper knows
print(kept.pid, doomed.pid, flush=True)
time.sleep(120)
"""

RUNNING_GO = """
import json, sys
from pathlib import Path
from gocaas.go.runner import run_command
go, module, env = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
run_command([go, "test", "-count=1", "./..."], env=env, cwd=module, timeout=600)
"""

HANGING_TEST = """package hang

import (
	"os"
	"strconv"
	"testing"
	"time"
)

func TestHang(t *testing.T) {
	os.WriteFile(os.Getenv("HANG_PID_FILE"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	time.Sleep(time.Hour)
}
"""


def stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields from the state on (state, ppid, pgrp, ...), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    fields = stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")  # a zombie has ended; init reaps it


def group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if (f := stat(pid)) is not None and f[2] == str(pgid) and alive(pid)]


def gone(pids: list[int], within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextmanager
def killing_after(*pgids: int) -> Iterator[None]:
    try:
        yield
    finally:
        for pgid in pgids:
            with suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)


def test_the_groups_still_listed_die_with_the_process() -> None:
    parent = subprocess.Popen([sys.executable, "-c", WATCHING], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    kept, doomed = map(int, parent.stdout.readline().split())
    with killing_after(kept, doomed):
        assert alive(kept) and alive(doomed)
        parent.kill()
        parent.wait()
        assert gone([doomed]), "a listed group outlived its gocaas"
        time.sleep(0.2)  # the reaper has run by now: what it spared stays spared
        assert alive(kept), "a group released after its wait was killed"


def test_a_go_test_dies_with_a_gocaas_killed_by_sigkill(
    tmp_path: Path, toolchain: Toolchain, go_env: dict[str, str]
) -> None:
    module = tmp_path / "hang"
    module.mkdir()
    (module / "go.mod").write_text("module example.com/hang\n\ngo 1.21\n")
    (module / "hang_test.go").write_text(HANGING_TEST)
    pid_file = tmp_path / "test-binary.pid"
    env = go_env | {"HANG_PID_FILE": str(pid_file)}
    argv = [sys.executable, "-c", RUNNING_GO, str(toolchain.go), str(module), json.dumps(env)]
    parent = subprocess.Popen(argv)
    deadline = time.monotonic() + 300
    while not pid_file.exists() or not pid_file.read_text():
        assert parent.poll() is None and time.monotonic() < deadline, "the test binary never started"
        time.sleep(0.05)
    test_binary = int(pid_file.read_text())
    fields = stat(test_binary)
    assert fields is not None
    pgid = int(fields[2])
    with killing_after(pgid):
        running = group(pgid)
        assert test_binary in running and len(running) >= 2, "go test and its test binary, in one group"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert gone(running), f"left running after gocaas was killed: {[p for p in running if alive(p)]}"
