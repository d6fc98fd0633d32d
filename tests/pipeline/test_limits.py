"""A build's resource limits (gocaas.stages.limits): a test that eats memory, or starts threads without end,
fails its own build, which names the limit it reached; the same module passes with room to spare; and what
a build's tests leave running ends with the build, whose cgroups are removed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gocaas.errors import FailureClass
from gocaas.go.cgroups import CgroupUnavailable, parents
from gocaas.settings import Settings
from tests.conftest import process_gone, skip_or_fail
from tests.pipeline.test_sandbox import log_of, run_test_stages

EAT = """package eat

import "testing"

func TestEat(t *testing.T) {
	b := make([]byte, 1<<30)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	t.Log(len(b))
}
"""

THREADS = """package threads

import (
	"runtime"
	"testing"
	"time"
)

func TestThreads(t *testing.T) {
	block := make(chan struct{})
	for i := 0; i < 1000; i++ {
		go func() {
			runtime.LockOSThread() // blocked while locked: each one holds a thread of its own
			<-block
		}()
	}
	time.Sleep(time.Second)
}
"""

LEAVE = """package leave

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestLeave(t *testing.T) {
	if os.Getenv("LEFT_BEHIND") == "1" {
		time.Sleep(10 * time.Minute)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=TestLeave")
	cmd.Env = append(os.Environ(), "LEFT_BEHIND=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // out of the go command's process group
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("left.pid", []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
}
"""


@pytest.fixture(autouse=True)
def cgroups() -> None:
    try:
        parents()
    except CgroupUnavailable as e:
        skip_or_fail(f"build cgroups are not available here: {e}")


def module(root: Path, name: str, test: str) -> Path:
    root.mkdir(parents=True)
    (root / "go.mod").write_text(f"module example.com/{name}\n\ngo 1.21\n")
    (root / f"{name}_test.go").write_text(test)
    return root


def limited(settings: Settings, **limits: object) -> Settings:
    return settings.model_copy(update={"build_limits": "on", **limits})


def test_a_test_that_eats_memory_fails_its_build_naming_the_limit(settings: Settings, tmp_path: Path) -> None:
    eat = module(tmp_path / "eat", "eat", EAT)
    tight = limited(settings, build_memory_limit=384 << 20)
    report = run_test_stages(eat, tight, tmp_path / "out1")
    assert report.failure is not None
    assert report.failure.kind == "memory_limit", report.failure
    assert report.failure.failure_class == FailureClass.USER
    assert "memory limit (memory 384 MiB" in report.failure.message
    assert "go test commands run with memory 384 MiB, 4096 processes and threads" in log_of(tight, report)
    assert report.limits is not None
    assert (report.limits.memory_bytes, report.limits.pids) == (384 << 20, 4096)
    assert "not re-run: the build reached its memory limit" in log_of(tight, report), "it would again"

    roomy = run_test_stages(eat, limited(settings, build_memory_limit=4 << 30), tmp_path / "out2")
    assert roomy.failure is None, roomy.failure


def test_a_test_that_starts_threads_without_end_fails_on_the_pids_limit(
    settings: Settings, tmp_path: Path
) -> None:
    threads = module(tmp_path / "threads", "threads", THREADS)
    report = run_test_stages(threads, limited(settings, build_pids_limit=300), tmp_path / "out1")
    assert report.failure is not None
    assert report.failure.kind == "pids_limit", report.failure
    assert "limit of 300 processes and threads" in report.failure.message

    roomy = run_test_stages(threads, limited(settings, build_pids_limit=4096), tmp_path / "out2")
    assert roomy.failure is None, roomy.failure


def test_what_the_tests_leave_running_ends_with_the_build(settings: Settings, tmp_path: Path) -> None:
    leave = module(tmp_path / "leave", "leave", LEAVE)
    unsandboxed = limited(settings, sandbox="off")  # in the sandbox, its PID namespace ends them anyway
    report = run_test_stages(leave, unsandboxed, tmp_path / "out")
    assert report.failure is None, report.failure
    assert report.limits is not None and report.limits.pids == 4096
    places = [settings.builds_dir / report.build_id, settings.home / "workspaces"]  # private, or per project
    (pid_file,) = (found for place in places for found in place.rglob("left.pid"))
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(pid), f"the test's child {pid} outlived the build"
    _, dirs = parents()
    assert not [made for d in dirs.values() for made in Path(d).glob(f"gocaas-build-{report.build_id}_p*")]
