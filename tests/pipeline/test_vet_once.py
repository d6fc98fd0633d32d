"""go test vets what it compiles; after the vet stage ran `go vet ./...` that pass is redundant and is
turned off, and only then: a vet problem in a test file is still caught, by one stage or the other."""

from __future__ import annotations

from pathlib import Path

from gocaas.report.model import BuildReport
from gocaas.settings import Settings
from tests.conftest import EXAMPLES, BuildFn
from tests.pipeline.test_test_stage import run_tests


def _go_test_line(report: BuildReport) -> str:
    [test] = [s for s in report.stages if s.name == "test"]
    assert test.log_path is not None
    return next(line for line in Path(test.log_path).read_text().splitlines() if "$ go test" in line)


def test_the_vet_stage_makes_go_tests_vet_pass_redundant(
    build: BuildFn, settings: Settings, tmp_path: Path
) -> None:
    vetted = build(EXAMPLES / "multi", vet=True)
    assert vetted.failure is None
    assert "-vet=off" in _go_test_line(vetted)
    assert "-vet=off" not in _go_test_line(build(EXAMPLES / "multi", vet=False))
    tested = run_tests(settings, EXAMPLES / "multi", tmp_path / "out", shuffle="off")
    assert "-vet=off" not in _go_test_line(tested)  # gocaas test: no vet stage


def _vet_problem_in_a_test(dest: Path) -> Path:
    dest.mkdir()
    (dest / "go.mod").write_text("module example.test/vetintest\n\ngo 1.21\n")
    (dest / "lib.go").write_text("package lib\n\nfunc Answer() int { return 42 }\n")
    (dest / "lib_test.go").write_text(
        'package lib\n\nimport "testing"\n\n'
        "func TestAnswer(t *testing.T) {\n"
        '\tif Answer() != 42 {\n\t\tt.Errorf("got %d", "not a number")\n\t}\n}\n'
    )
    return dest


def test_a_vet_problem_in_a_test_file_is_caught_either_way(build: BuildFn, tmp_path: Path) -> None:
    module = _vet_problem_in_a_test(tmp_path / "m")
    by_vet_stage = build(module, vet=True)
    assert by_vet_stage.failure is not None
    assert (by_vet_stage.failure.stage, by_vet_stage.failure.kind) == ("vet", "vet_finding")
    by_go_test = build(module, vet=False)
    assert by_go_test.failure is not None
    assert by_go_test.failure.stage == "test"
    assert "Errorf format %d has arg" in by_go_test.failure.message + "".join(
        p.output for p in (by_go_test.tests.packages if by_go_test.tests else [])
    )
