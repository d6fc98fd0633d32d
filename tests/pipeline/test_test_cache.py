"""Test results reused across builds and fresh copies of the source (issue 4, point 6): go keys the files a
test reads by absolute path, size, mode and mtime, so gocaas gives them a stable path and content mtimes."""

from __future__ import annotations

import shutil
from pathlib import Path

from gocaas.pipeline.run import TEST_STAGES, run_build
from gocaas.report.model import BuildReport
from gocaas.settings import Settings
from gocaas.spec import BuildOptions, BuildSpec, SourceSpec, Target, TestOptions

MODULE = {
    "go.mod": "module example.test/tdata\n\ngo 1.21\n",
    "data.go": "package tdata\n\nfunc Double(n int) int { return 2 * n }\n",
    "data_test.go": (
        'package tdata\n\nimport (\n\t"os"\n\t"testing"\n)\n\n'
        "func TestReadsTestdata(t *testing.T) {\n"
        '\tb, err := os.ReadFile("testdata/input.txt")\n'
        "\tif err != nil || len(b) == 0 {\n\t\tt.Fatal(err)\n\t}\n}\n\n"
        "func TestDouble(t *testing.T) {\n\tif Double(2) != 4 {\n\t\tt.Fatal()\n\t}\n}\n"
    ),
    "testdata/input.txt": "one\n",
}


def _write(root: Path) -> Path:
    for name, text in MODULE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _test(settings: Settings, source: Path, out: Path) -> BuildReport:
    spec = BuildSpec(
        source=SourceSpec(kind="directory", location=str(source)),
        options=BuildOptions(targets=(Target.parse("linux/amd64"),), tests=TestOptions(shuffle="off")),
    )
    report = run_build(spec, settings, out_dir=out, stages=TEST_STAGES)
    assert report.failure is None, report.failure
    return report


def _cached(report: BuildReport) -> bool:
    assert report.tests is not None
    [package] = report.tests.packages
    return package.cached


def test_unchanged_tests_come_back_cached_from_a_fresh_copy(fresh_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = fresh_settings()
    first = _write(tmp_path / "checkout-1")
    assert not _cached(_test(settings, first, tmp_path / "out"))
    assert _cached(_test(settings, first, tmp_path / "out"))  # same checkout, next build

    # A fresh copy elsewhere: new path, new mtimes, same content -> still cached.
    fresh = _write(tmp_path / "checkout-2")
    report = _test(settings, fresh, tmp_path / "out")
    assert _cached(report)
    assert report.cache is not None and report.cache.hits > 0  # served through GOCACHEPROG

    # A changed data file runs the test again.
    (fresh / "testdata" / "input.txt").write_text("two\n")
    assert not _cached(_test(settings, fresh, tmp_path / "out"))
    shutil.rmtree(first)
