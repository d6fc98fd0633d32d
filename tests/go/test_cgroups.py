"""A build's cgroups (gocaas.go.cgroups), made in this machine's real cgroup hierarchy: limits written,
processes moved in with what they started, counters read, everything left killed and the cgroups removed;
and a process born inside one moving itself out (what the resident cache program does)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gocaas.go.cgroups import PREFIX, BuildCgroup, CgroupUnavailable, parents
from tests.conftest import process_gone, skip_or_fail

# A parent that starts a child, says both pids, and waits for a line on stdin; then, if told "leave", leaves
# its build cgroup and says its cgroups.
FAMILY = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(os.getpid(), child.pid, flush=True)
if sys.stdin.readline().strip() == "leave":
    from gocaas.go.cgroups import leave_build_cgroup
    leave_build_cgroup()
    print(open("/proc/self/cgroup").read().replace("\\n", ";"), flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def cgroup() -> Iterator[BuildCgroup]:
    try:
        parents()
    except CgroupUnavailable as e:
        skip_or_fail(f"build cgroups are not available here: {e}")
    made = BuildCgroup.create(f"test-{uuid.uuid4().hex[:8]}", memory=256 << 20, pids=100)
    yield made
    made.close()


def _procs(cgroup: BuildCgroup) -> list[set[int]]:
    return [{int(p) for p in Path(d, "cgroup.procs").read_text().split()} for d in cgroup.dirs.values()]


def _family() -> tuple[subprocess.Popen[str], int, int]:
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", FAMILY], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    parent, child = (int(p) for p in proc.stdout.readline().split())
    return proc, parent, child


def test_limits_are_written_and_a_process_is_moved_in_with_its_children(cgroup: BuildCgroup) -> None:
    for path in cgroup.dirs.values():
        assert Path(path).name.startswith(PREFIX + "test-")
    if cgroup.version == 1:
        assert int(Path(cgroup.dirs["memory"], "memory.limit_in_bytes").read_text()) == 256 << 20
        assert Path(cgroup.dirs["pids"], "pids.max").read_text().strip() == "100"
    else:
        assert int(Path(cgroup.dirs[""], "memory.max").read_text()) == 256 << 20
    proc, parent, child = _family()
    try:
        assert all(not procs for procs in _procs(cgroup)), "empty before"
        cgroup.adopt(parent)
        assert all(procs == {parent, child} for procs in _procs(cgroup)), "the child it had started, too"
        counted = cgroup.counters()
        assert (counted.oom_kills, counted.pids_refused) == (0, 0)
    finally:
        assert cgroup.close(), "what was left is killed, and the cgroups removed"
        proc.wait(timeout=10)
    assert proc.returncode == -9
    assert process_gone(child)
    assert not any(Path(d).exists() for d in cgroup.dirs.values())


def test_a_process_born_in_a_build_cgroup_can_leave_it(cgroup: BuildCgroup) -> None:
    proc, parent, child = _family()
    assert proc.stdin is not None and proc.stdout is not None
    try:
        cgroup.adopt(parent)
        proc.stdin.write("leave\n")
        proc.stdin.flush()
        now_in = proc.stdout.readline()
        assert now_in and PREFIX not in now_in, now_in
        assert all(procs == {child} for procs in _procs(cgroup)), "it left; its child stays"
    finally:
        cgroup.close()
        proc.kill()
        proc.wait(timeout=10)


def test_a_memory_hog_is_killed_and_counted(cgroup: BuildCgroup) -> None:
    hog = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.readline(); b = bytearray(600 << 20); print(len(b))"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert hog.stdin is not None
    cgroup.adopt(hog.pid)
    hog.stdin.write("go\n")
    hog.stdin.flush()
    out, _ = hog.communicate(timeout=60)
    assert hog.returncode == -9 and not out, "over its 256 MiB: killed"
    assert cgroup.counters().oom_kills >= 1


MADE_THEN_KILLED = """
import subprocess, sys, time
from gocaas.go.cgroups import BuildCgroup
made = BuildCgroup.create(sys.argv[1], memory=None, pids=100)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
made.adopt(child.pid)
print(child.pid, *made.dirs.values(), flush=True)
time.sleep(600)
"""


def test_what_a_gocaas_killed_outright_left_is_removed_by_the_next_build(cgroup: BuildCgroup) -> None:
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    owner = subprocess.Popen(
        [sys.executable, "-c", MADE_THEN_KILLED, f"killed-{uuid.uuid4().hex[:8]}"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert owner.stdout is not None
    child, *dirs = owner.stdout.readline().split()
    owner.kill()  # SIGKILL: no chance to clean up
    owner.wait(timeout=10)
    assert all(Path(d).is_dir() for d in dirs) and Path(f"/proc/{child}").exists()

    after = BuildCgroup.create(f"after-{uuid.uuid4().hex[:8]}", memory=None, pids=100)
    after.close()
    assert not any(Path(d).exists() for d in dirs), "its owner is gone: removed"
    assert process_gone(int(child))
    assert Path(cgroup.dirs[next(iter(cgroup.dirs))]).is_dir(), "a live gocaas's cgroup is left alone"


def test_a_user_who_may_not_make_cgroups_is_told_why() -> None:
    """As nobody (not root, no delegated cgroup): why not, naming the hierarchy; not a traceback."""
    system_python, setpriv = Path("/usr/bin/python3"), Path("/usr/bin/setpriv")
    if os.geteuid() != 0 or not system_python.exists() or not setpriv.exists():
        skip_or_fail("needs root, /usr/bin/python3 and setpriv to run as nobody")
    src = Path(__file__).resolve().parents[2] / "src"
    script = (
        "from gocaas.go.cgroups import CgroupUnavailable, parents\n"
        "try:\n    print(parents())\nexcept CgroupUnavailable as e:\n    print('unavailable:', e)\n"
    )
    ran = subprocess.run(
        [str(setpriv), "--reuid=65534", "--regid=65534", "--clear-groups", str(system_python), "-c", script],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("unavailable: cgroup v"), ran.stdout
    assert "cannot" in ran.stdout and "/sys/fs/cgroup" in ran.stdout
