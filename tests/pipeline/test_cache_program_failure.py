"""A cache program that fails a go command (a put it cannot store, a crash) does not fail the build: the
command runs again without it, and so does the rest of the build; what counts as such a failure."""

from __future__ import annotations

import errno
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from gocaas.errors import FailureClass
from gocaas.go.runner import CommandResult
from gocaas.go.sandbox import find_bwrap, probe
from gocaas.pipeline.cachedamage import cacheprog_failure, go_messages
from gocaas.pipeline.classify import classify
from gocaas.report.model import BuildReport
from gocaas.settings import Settings
from tests.conftest import EXAMPLES, BuildFn, skip_or_fail
from tests.pipeline.test_cache_damage import binaries, healthy, notes_of, stats_of  # noqa: F401

BYPASS_NOTE = "failed because the build cache program failed"


def test_a_store_that_takes_no_put_does_not_fail_the_build(
    build: BuildFn,
    fresh_settings,  # type: ignore[no-untyped-def]
    healthy: BuildReport,  # noqa: F811
    tmp_path: Path,
) -> None:
    worker: Settings = fresh_settings()
    worker.cache_dir.mkdir(parents=True)
    (worker.cache_dir / "tmp").write_text("a file where the store's temp directory should be\n")

    report = build(EXAMPLES / "hello", settings_=worker, out=tmp_path / "out")
    assert report.failure is None, report.failure
    notes = notes_of(report)
    assert any(BYPASS_NOTE in note and "Error" in note for note in notes), notes
    assert sum(BYPASS_NOTE in note for note in notes) == report.cache.bypasses, "one note per re-run"  # type: ignore[union-attr]
    assert report.cache is not None and report.cache.bypasses >= 1
    assert {"bypassed": True} in stats_of(worker, report)
    assert binaries(report) == binaries(healthy), "the same binaries as through a healthy cache"
    assert not any((worker.cache_dir / "actions").rglob("*")), "nothing was stored"


def _test_json(*events: dict[str, str]) -> str:
    return "\n".join(json.dumps(event) for event in events)


@pytest.mark.parametrize(
    ("stdout", "stderr", "failed"),
    [
        ("", "gocaas cacheprog: FileExistsError: [Errno 17] File exists: '/d/cache/tmp/11-0'", True),
        ("", "go: GOCACHEPROG exited pre-Close with 3 pending requests", True),
        ("", 'go: error starting GOCACHEPROG program "gocaas": exec: not found', True),
        (
            "",
            "gocaas cacheprog: internal error: ValueError\ngo: error reading JSON from GOCACHEPROG",
            True,
        ),
        (
            _test_json({"Action": "build-output", "Output": "gocaas cacheprog: OSError: [Errno 28]\n"}),
            "",
            True,
        ),
        # a warning of the program's, next to the module's own error, is not the program failing
        (
            "",
            "gocaas cacheprog: remote cache http://c unavailable\nmain.go:3: x",
            False,
        ),
        # a test printing the words is the test's output, not the go command's
        (
            _test_json({"Action": "output", "Output": "GOCACHEPROG exited pre-Close\n"}),
            "",
            False,
        ),
    ],
    ids=["put-error", "exited", "not-started", "crashed", "test-build", "warning", "test-output"],
)
def test_what_counts_as_a_failed_cache_program(stdout: str, stderr: str, failed: bool) -> None:
    result = CommandResult(("go", "test"), 1, stdout, stderr, 0.1)
    assert (cacheprog_failure(go_messages(result)) is not None) is failed
    error = classify(result, stage="test", module_root=Path("/src"))
    assert (error.kind == "cache_program") is failed, error
    if failed:
        assert error.failure_class is FailureClass.INFRASTRUCTURE


def test_a_cache_program_that_cannot_be_started_outside_the_sandbox_does_not_fail_the_build(
    build: BuildFn,
    fresh_settings,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    found = find_bwrap(None, "/usr/bin:/bin")
    if found is None or probe(found) is not None:
        skip_or_fail("bubblewrap is needed")

    def no_space(**_: object) -> str:  # the one fault injected: its socket's directory cannot be made
        raise OSError(errno.ENOSPC, "No space left on device")

    local = SimpleNamespace(**{**vars(tempfile), "mkdtemp": no_space})
    monkeypatch.setattr("gocaas.go.outside.tempfile", local)
    worker: Settings = fresh_settings(sandbox="on")
    report = build(EXAMPLES / "hello", settings_=worker, out=tmp_path / "out", vet=False)
    assert report.failure is None, report.failure
    assert report.sandboxed is True
    notes = notes_of(report)
    assert any("could not start the build cache program" in note and "No space" in note for note in notes)
    assert report.cache is not None and report.cache.bypasses == 1, "then none of the later commands tried"
