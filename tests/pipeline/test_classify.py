"""Classification of go command failures from the words the go command really prints, and a real timeout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gocaas.errors import FailureClass
from gocaas.go.runner import CommandResult, run_command
from gocaas.pipeline.classify import classify
from tests.conftest import EXAMPLES, BuildFn

ROOT = Path("/b/src")


def _result(stderr: str) -> CommandResult:
    return CommandResult(("go", "build"), 1, "", stderr, 0.1)


@pytest.mark.parametrize(
    ("stderr", "klass", "kind"),
    [
        ("verifying example.test/greet@v1.1.0: checksum mismatch\n\tdownloaded: h1:x\n\tgo.sum: h1:y\n\n"
         "SECURITY ERROR\nThis download does NOT match an earlier download", FailureClass.USER,
         "checksum_mismatch"),
        ("main.go:4:2: missing go.sum entry for module providing package example.test/greet",
         FailureClass.USER, "missing_go_sum"),
        ("go: example.test/greet@v1.1.0: Get \"https://proxy/x\": dial tcp 127.0.0.1:9: connect: "
         "connection refused", FailureClass.INFRASTRUCTURE, "network"),
        ("go: reading http://127.0.0.1:1/example.test/greet/@v/v1.1.0.mod: 502 Bad Gateway",
         FailureClass.INFRASTRUCTURE, "network"),
        ("# example.com/x\ncompile: signal: killed", FailureClass.INFRASTRUCTURE, "out_of_memory"),
        ("fatal error: runtime: out of memory", FailureClass.INFRASTRUCTURE, "out_of_memory"),
        ("go: example.test/nope@v1.0.0: reading file:///p/example.test/nope/@v/v1.0.0.mod: no such file or "
         "directory\nunknown revision v1.0.0", FailureClass.USER, "module_not_found"),
        ("./main.go:3:5: undefined: x", FailureClass.USER, "compile_error"),
        ("bwrap: execvp /usr/local/go/bin/go: Permission denied", FailureClass.INFRASTRUCTURE, "sandbox"),
        ("main.go:3:5: undefined: x\n# says bwrap: mid-line", FailureClass.USER, "compile_error"),
        ("# example.com/x\ncompile: writing output: write $WORK/b001/_pkg_.a: no space left on device",
         FailureClass.INFRASTRUCTURE, "disk_full"),
        ("go: writing go.mod cache: write /c/mod/cache/x.mod: disk quota exceeded",
         FailureClass.INFRASTRUCTURE, "disk_full"),
    ],
)
def test_classify(stderr: str, klass: FailureClass, kind: str) -> None:
    error = classify(_result(stderr), stage="build", module_root=ROOT)
    assert (error.failure_class, error.kind) == (klass, kind)


def test_a_full_disk_is_the_machines_not_the_modules(small_disk: Path, go_env: dict[str, str]) -> None:
    """go build -o onto a disk with no room: what the real go command says is classified disk_full, and
    the message says what the disk has free; a test that prints the words is still the test's failure."""
    full = small_disk / "filler"
    with full.open("wb") as f:  # leave 256 KiB: less than the binary
        f.write(b"\0" * ((16 << 20) - (256 << 10)))
    argv = ["go", "build", "-o", str(small_disk / "hello"), "."]
    result = run_command(argv, cwd=EXAMPLES / "hello", env=go_env, timeout=300)
    assert result.returncode != 0 and "no space left on device" in result.stderr
    error = classify(result, stage="build", module_root=EXAMPLES / "hello", cache_dir=small_disk / "cache")
    assert (error.failure_class, error.kind, error.exit_code) == (FailureClass.INFRASTRUCTURE, "disk_full", 3)
    assert error.message.startswith("out of disk space: build: ") and "/hello: no space left" in error.message
    assert f"the disk holding {small_disk} has 0." in error.message, error.message
    said = "write /t: no space left on device\n"
    printed = json.dumps({"Action": "output", "Package": "x", "Output": said})
    test_failure = CommandResult(("go", "test"), 1, printed + "\n", "", 0.1)
    assert classify(test_failure, stage="test", module_root=ROOT).kind != "disk_full"


# What a fresh worker's go build printed after a remote cache swapped the outputs of 10 pairs of entries
SWAPPED = (
    "/usr/local/go/src/sync/pool.go:9:2: package runtime is not in std (/usr/local/go/src/runtime)\n"
    "/usr/local/go/src/fmt/print.go:10:2: package os is not in std (/usr/local/go/src/os)\n"
)


def test_errors_only_inside_goroot_are_the_toolchain_or_cache() -> None:
    error = classify(_result(SWAPPED), stage="build", module_root=ROOT, goroot=Path("/usr/local/go"))
    assert (error.failure_class, error.kind) == (FailureClass.INFRASTRUCTURE, "toolchain_or_cache")
    files = [d.file for d in error.diagnostics]
    assert files == ["/usr/local/go/src/sync/pool.go", "/usr/local/go/src/fmt/print.go"]
    assert "not this module's code" in error.message and error.exit_code == 3


@pytest.mark.parametrize(
    ("stderr", "goroot"),
    [
        (SWAPPED + "./main.go:3:5: undefined: x\n", "/usr/local/go"),  # one error in the module: its own
        (SWAPPED, "/opt/go"),  # another toolchain's sources
        (SWAPPED, None),  # no toolchain known
    ],
    ids=["with-a-module-error", "other-goroot", "no-goroot"],
)
def test_errors_not_all_inside_goroot_stay_the_users(stderr: str, goroot: str | None) -> None:
    root = Path(goroot) if goroot else None
    error = classify(_result(stderr), stage="build", module_root=ROOT, goroot=root)
    assert (error.failure_class, error.kind) == (FailureClass.USER, "compile_error")


def test_vet_stage_findings_are_vet_findings() -> None:
    error = classify(_result("./main.go:6:2: fmt.Printf format %d has arg"), stage="vet", module_root=ROOT)
    assert error.kind == "vet_finding"
    assert error.diagnostics[0].file == "main.go"


def test_a_build_past_its_timeout_is_infrastructure(build: BuildFn, fresh_settings, tmp_path: Path) -> None:
    # A target nothing has compiled for yet takes far longer than a second: the go command is killed.
    settings = fresh_settings(build_timeout=1.0)
    report = build(EXAMPLES / "hello", settings_=settings, targets=("netbsd/arm",), vet=False)
    assert report.failure is not None
    assert (report.failure.failure_class, report.failure.kind) == (FailureClass.INFRASTRUCTURE, "timeout")
    assert report.exit_code == 3
