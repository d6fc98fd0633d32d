"""--race: a real data race is caught (so -race really reached go test); no C compiler is a clear error."""

from __future__ import annotations

from pathlib import Path

from gocaas.pipeline.run import TEST_STAGES, run_build
from gocaas.report.model import BuildReport
from gocaas.settings import Settings
from gocaas.spec import BuildOptions, BuildSpec, SourceSpec, Target, TestOptions

RACY = {
    "go.mod": "module example.test/racy\n\ngo 1.21\n",
    "racy_test.go": (
        'package racy\n\nimport (\n\t"sync"\n\t"testing"\n)\n\n'
        "func TestRace(t *testing.T) {\n\tvar wg sync.WaitGroup\n\tn := 0\n"
        "\tfor i := 0; i < 2; i++ {\n\t\twg.Add(1)\n\t\tgo func() { defer wg.Done(); n++ }()\n\t}\n"
        "\twg.Wait()\n\t_ = n\n}\n"
    ),
}


def _run(settings: Settings, tmp_path: Path, race: bool) -> BuildReport:
    src = tmp_path / "racy"
    for name, text in RACY.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    spec = BuildSpec(
        source=SourceSpec(kind="directory", location=str(src)),
        options=BuildOptions(targets=(Target.parse("linux/amd64"),),
                             tests=TestOptions(race=race, reruns=0, shuffle="off")),
    )
    return run_build(spec, settings, out_dir=tmp_path / "out", stages=TEST_STAGES)


def test_race_detector_catches_a_data_race(settings: Settings, tmp_path: Path) -> None:
    assert _run(settings, tmp_path, race=False).failure is None  # without -race the test passes
    report = _run(settings, tmp_path, race=True)
    assert report.failure is not None and report.failure.kind == "test_failed"
    assert report.tests is not None
    [test] = [t for t in report.tests.tests if t.name == "TestRace"]
    assert "DATA RACE" in test.output or "race detected" in test.output


def test_race_without_a_c_compiler_is_a_clear_error(fresh_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "no-compilers"
    empty.mkdir()
    report = _run(fresh_settings(system_path=str(empty)), tmp_path, race=True)
    assert report.failure is not None
    assert (report.failure.kind, report.exit_code) == ("no_c_compiler", 2)
    assert "C compiler" in report.failure.message
