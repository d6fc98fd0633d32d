"""Nothing from the input reaches the go command except through a validated, typed field."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, CliFn


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """A -toolexec program that would leave a marker file if go ever ran it."""
    marker = tmp_path / "toolexec-ran"
    script = tmp_path / "evil.sh"
    script.write_text(f'#!/bin/sh\ntouch {marker}\nexec "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, marker


def test_goflags_in_the_callers_environment_never_reach_go(
    cli: CliFn, evil: tuple[Path, Path], tmp_path: Path
) -> None:
    script, marker = evil
    env = {
        "GOFLAGS": f"-toolexec={script}",
        "GOTOOLCHAIN": "auto",
        "CGO_ENABLED": "1",
        "GOENV": str(tmp_path / "goenv"),
        "GOEXPERIMENT": "nonsense",
    }
    (tmp_path / "goenv").write_text(f"GOFLAGS=-toolexec={script}\n")
    proc = cli("build", str(EXAMPLES / "hello"), "--out", str(tmp_path / "d"), env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert not marker.exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--target", "linux/amd64 -toolexec=/tmp/x"),
        ("--target", "-toolexec=/tmp/x"),
        ("--version", "1.0 -toolexec=/tmp/x"),
        ("--version", "1.0' -X main.x=y"),
        ("--go", "1.25 -toolexec=/tmp/x"),
        ("--archive", "-toolexec"),
    ],
)
def test_flags_smuggled_through_options_are_refused(cli: CliFn, option: str, value: str) -> None:
    proc = cli("build", str(EXAMPLES / "hello"), option, value)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error" in proc.stderr.lower()


def test_git_ref_that_looks_like_an_option_is_refused(cli: CliFn, tmp_path: Path) -> None:
    proc = cli("build", f"file://{tmp_path}/repo", "--ref", "--upload-pack=/tmp/x")
    assert proc.returncode == 2


def test_source_path_that_looks_like_a_flag(cli: CliFn, tmp_path: Path, evil: tuple[Path, Path]) -> None:
    script, marker = evil
    odd = tmp_path / f"-toolexec={script.name}"
    odd.mkdir()
    for item in (EXAMPLES / "hello").iterdir():
        (odd / item.name).write_bytes(item.read_bytes())
    proc = cli("build", "--out", str(tmp_path / "d"), "--", odd.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert any((tmp_path / "d").iterdir())
