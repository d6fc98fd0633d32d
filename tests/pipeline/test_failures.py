"""Failure classification: the user's code vs bad input vs infrastructure, with diagnostics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gocaas.errors import FailureClass
from gocaas.report.model import StageStatus
from gocaas.spec import TestOptions
from tests.conftest import EXAMPLES, BuildFn, CliFn, copy_example


def test_compile_error_names_file_and_line(build: BuildFn, tmp_path: Path) -> None:
    src = copy_example("multi", tmp_path / "multi")
    lib = src / "greeting" / "greeting.go"
    lines = lib.read_text().splitlines()
    bad_line = lines.index('\treturn "hello, " + name') + 1
    lines[bad_line - 1] = '\treturn "hello, " + nmae'
    lib.write_text("\n".join(lines) + "\n")

    report = build(src)
    assert report.exit_code == 1
    assert report.failure is not None
    assert report.failure.failure_class is FailureClass.USER
    assert report.failure.stage == "vet"  # vet type-checks first and finds it
    assert report.failure.kind in {"compile_error", "vet_finding"}
    first = report.failure.diagnostics[0]
    assert (first.file, first.line, first.column) == ("greeting/greeting.go", bad_line, 21)
    assert "undefined: nmae" in first.message
    # Later stages are recorded as skipped because of it.
    assert [s.status for s in report.stages][-2:] == [StageStatus.SKIPPED, StageStatus.SKIPPED]


@pytest.mark.parametrize(("tests", "stage"), [(True, "test"), (False, "build")])
def test_compile_error_without_vet_is_a_compile_error(
    build: BuildFn, tmp_path: Path, tests: bool, stage: str
) -> None:
    src = copy_example("hello", tmp_path / "hello")
    (src / "broken.go").write_text('package main\n\nfunc broken() int {\n\treturn "s"\n}\n')
    report = build(src, vet=False, tests=TestOptions(enabled=tests))
    assert report.failure is not None and report.failure.kind == "compile_error"
    assert report.failure.stage == stage
    diag = report.failure.diagnostics[0]
    assert (diag.file, diag.line) == ("broken.go", 4)


def test_vet_finding(cli: CliFn, tmp_path: Path) -> None:
    src = copy_example("hello", tmp_path / "hello")
    (src / "fmtbug.go").write_text(
        'package main\n\nimport "fmt"\n\nfunc bug() {\n\tfmt.Printf("%d\\n", "s")\n}\n'
    )
    proc = cli("build", str(src), "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["failure"]["class"] == "user" and report["failure"]["kind"] == "vet_finding"
    diag = report["failure"]["diagnostics"][0]
    assert diag["file"] == "fmtbug.go" and diag["line"] == 6
    assert re.search(r"format %d has arg .* of wrong type string", diag["message"])


def test_bad_target_is_bad_input(cli: CliFn) -> None:
    proc = cli("build", str(EXAMPLES / "hello"), "--target", "plan9/sparc64")
    assert proc.returncode == 2
    assert "plan9/sparc64" in proc.stdout + proc.stderr


def test_unsupported_target_syntax(cli: CliFn) -> None:
    for bad in ("../../x", "linux", "linux/amd64/x", "Linux/AMD64"):
        proc = cli("build", str(EXAMPLES / "hello"), "--target", bad)
        assert proc.returncode == 2, bad
        assert "target" in proc.stderr and bad in proc.stderr


def test_missing_source_is_bad_input(cli: CliFn, tmp_path: Path) -> None:
    proc = cli("build", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert "nope" in proc.stderr
    empty = cli("build", "", cwd=EXAMPLES / "hello")  # Path("") would be the working directory
    assert empty.returncode == 2 and "the source is empty" in empty.stderr, empty.stderr


def test_unusable_out_and_report_are_refused_before_the_build(cli: CliFn, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for args, words in (
        (("--out", str(a_file)), "exists and is not a directory"),
        (("--out", str(a_file / "sub")), "--out"),
        (("--report", str(tmp_path)), "is a directory"),
        (("--report", str(a_file / "r.json")), "--report"),
    ):
        proc = cli("build", str(EXAMPLES / "hello"), "--json", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        failure = json.loads(proc.stdout)["failure"]
        assert failure["stage"] is None and words in failure["message"], failure  # no stage ran
    assert a_file.read_text() == "x"


def test_not_a_module_is_bad_input(cli: CliFn, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = cli("build", str(tmp_path / "empty"), "--json")
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["failure"]["class"] == "user" and "go.mod" in report["failure"]["message"]


def test_unavailable_go_version_lists_what_is(cli: CliFn, fresh_settings, tmp_path: Path) -> None:
    settings = fresh_settings(pip_no_index=True, pip_find_links=str(tmp_path))  # an empty wheelhouse
    proc = cli(
        "build",
        str(EXAMPLES / "hello"),
        "--go",
        "1.19.1",
        "--json",
        settings_=settings,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2, proc.stderr
    failure = json.loads(proc.stdout)["failure"]
    assert failure["kind"] == "toolchain_unavailable"
    assert "1.19.1" in failure["message"] and "Installed:" in failure["message"]


def test_bad_input_with_json_still_answers_json(cli: CliFn) -> None:
    proc = cli("build", str(EXAMPLES / "hello"), "--target", "../../x", "--json")
    assert proc.returncode == 2
    answer = json.loads(proc.stdout)
    assert answer["failure"]["kind"] == "bad_input" and "../../x" in answer["failure"]["message"]


def test_error_text_with_brackets_is_printed_as_is(cli: CliFn) -> None:
    proc = cli("build", str(EXAMPLES / "hello"), "--version", "[bold]x y")
    assert proc.returncode == 2
    assert "[bold]x y" in proc.stderr
