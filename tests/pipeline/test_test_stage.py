"""The test stage through the Python API, with the real go command on tests/fixtures/gotest: per-test results,
re-runs and flaky tests, timeouts, panics, test build failures, TestMain, JUnit, coverage, shuffle, -run and
-count, --changed-since, tiers and the flaky history in the store.

Builds run the stages of `gocaas test` (no vet, no linking: the fixtures are libraries); test_test_cli.py
shows the stage inside `gocaas build`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gocaas.go.env import BuildDirs, go_environ
from gocaas.go.toolchain import Toolchain, all_known
from gocaas.pipeline.run import TEST_STAGES, run_build
from gocaas.report.model import BuildReport, StageRecord, StageStatus
from gocaas.report.tests import PackageState, TestResult, TestState
from gocaas.settings import Settings
from gocaas.spec import BuildOptions, BuildSpec, FlakyPolicy, SourceSpec, Target, TestOptions, TestTier
from gocaas.store import TestHistoryRepo, open_store
from tests.conftest import ROOT, CliFn, copy_example
from tests.source.builders import git

GOTEST = ROOT / "tests" / "fixtures" / "gotest"
COVER = ROOT / "tests" / "fixtures" / "cover"
TIERS = (TestTier(name="unit"), TestTier(name="integration", tags=("integration",), default=False))

RunTests = Callable[..., BuildReport]


def run_tests(
    settings: Settings,
    source: Path,
    out: Path,
    *,
    changed_since: str | None = None,
    **tests: Any,
) -> BuildReport:
    """What `gocaas test SOURCE` runs, with these TestOptions fields."""
    spec = BuildSpec(
        source=SourceSpec(kind="directory", location=str(source), changed_since=changed_since),
        options=BuildOptions(targets=(Target.parse("linux/amd64"),), tests=TestOptions(**tests)),
    )
    return run_build(spec, settings, out_dir=out, stages=TEST_STAGES)


@pytest.fixture
def gotest(settings: Settings, tmp_path: Path) -> RunTests:
    """gotest(source, settings_=..., out=..., changed_since=..., **TestOptions fields)."""

    def run(
        source: Path | str,
        *,
        settings_: Settings | None = None,
        out: Path | None = None,
        changed_since: str | None = None,
        **tests: Any,
    ) -> BuildReport:
        source = GOTEST / source if isinstance(source, str) else source
        return run_tests(
            settings_ or settings, source, out or tmp_path / "out", changed_since=changed_since, **tests
        )

    return run


def results(report: BuildReport) -> list[TestResult]:
    assert report.tests is not None, report.failure
    return report.tests.tests


def named(report: BuildReport) -> dict[str, list[TestResult]]:
    found: dict[str, list[TestResult]] = {}
    for test in results(report):
        found.setdefault(test.name, []).append(test)
    return found


def one(report: BuildReport, name: str) -> TestResult:
    [test] = named(report)[name]
    return test


def stage(report: BuildReport, name: str = "test") -> StageRecord:
    [record] = [s for s in report.stages if s.name == name]
    return record


def junit(report: BuildReport) -> ET.Element:
    assert report.tests is not None and report.tests.junit_path is not None
    return ET.parse(report.tests.junit_path).getroot()


def cases(root: ET.Element) -> dict[str, ET.Element]:
    return {case.attrib["name"]: case for case in root.iter("testcase")}


# --- a passing suite ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def passing(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    return run_tests(settings, GOTEST / "passing", tmp_path_factory.mktemp("passing"), shuffle="on")


def test_passing_suite_counts_subtests_and_skips(passing: BuildReport) -> None:
    assert passing.exit_code == 0 and passing.failure is None
    assert passing.tests is not None
    summary = passing.tests.summary
    assert (summary.total, summary.passed, summary.failed, summary.skipped, summary.flaky) == (6, 5, 0, 1, 0)
    assert summary.failures == [] and summary.not_run == [] and summary.packages_without_tests == []
    assert sorted(named(passing)) == [
        "TestAdd", "TestLog", "TestSkipped", "TestTable", "TestTable/neg", "TestTable/zero",
    ]  # fmt: skip
    assert {t.package for t in results(passing)} == {"example.test/passing"}
    assert one(passing, "TestSkipped").state is TestState.SKIPPED
    assert "not on this machine" in one(passing, "TestSkipped").output
    assert one(passing, "TestTable/zero").state is TestState.PASSED
    assert "hello from TestLog" in one(passing, "TestLog").output
    assert all(t.attempts == 1 for t in results(passing))
    assert {s.name for s in summary.slowest} <= {"TestAdd", "TestLog", "TestSkipped", "TestTable"}


def test_shuffle_on_records_each_packages_seed(passing: BuildReport) -> None:
    assert passing.tests is not None and passing.tests.shuffle == "on"
    [package] = passing.tests.packages
    assert package.state is PackageState.PASSED
    assert isinstance(package.shuffle_seed, int)
    assert f"-test.shuffle {package.shuffle_seed}" in package.output
    # ... and in the JUnit suite's properties, to replay the order with --shuffle SEED.
    [suite] = junit(passing).iter("testsuite")
    properties = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert properties["go.shuffle_seed"] == str(package.shuffle_seed)
    assert properties["go.version"] == passing.go_version


def test_shuffle_auto_shuffles_what_changed_and_lets_go_cache_the_rest(
    fresh_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # Its own data directory: other tests build this module too, and the workspace is per module path.
    settings = fresh_settings()
    src = tmp_path / "cover"
    shutil.copytree(GOTEST.parent / "cover", src)

    def run() -> dict[str, tuple[int | None, bool]]:
        report = run_tests(settings, src, tmp_path / "out")  # the default: --shuffle auto
        assert report.failure is None and report.tests is not None
        assert report.tests.shuffle.startswith("auto:")
        return {p.package.rsplit("/", 1)[-1]: (p.shuffle_seed, p.cached) for p in report.tests.packages
                if p.state is PackageState.PASSED}

    first = run()  # nothing earlier in this workspace: every package is new, so shuffled
    assert all(seed is not None for seed, _ in first.values()), first
    second = run()  # unchanged: unshuffled, so go can cache the results ...
    assert all(seed is None for seed, _ in second.values()), second
    third = run()  # ... and does
    assert all(cached for _, cached in third.values()), third
    calc = src / "calc" / "calc.go"
    calc.write_text(calc.read_text() + "\n// changed\n")
    fourth = run()  # calc changed: calc and text (which imports it) are shuffled and run again
    assert fourth["calc"][0] is not None and not fourth["calc"][1]
    text = src / "text" / "text.go"
    text.write_text(text.read_text() + "\n// changed\n")
    # Two go test runs at once, their results merged: text (changed) shuffled and run, calc from go's cache.
    fifth = run()
    assert fifth["text"][0] is not None and not fifth["text"][1], fifth
    assert fifth["calc"] == (None, True), fifth


def test_junit_of_a_passing_suite(passing: BuildReport) -> None:
    root = junit(passing)
    assert root.tag == "testsuites"
    assert (root.attrib["tests"], root.attrib["failures"], root.attrib["errors"], root.attrib["skipped"]) == (
        "6", "0", "0", "1",
    )  # fmt: skip
    [suite] = root.findall("testsuite")
    assert suite.attrib["name"] == "example.test/passing"
    assert suite.attrib["tests"] == "6" and len(suite.findall("testcase")) == 6
    found = cases(root)
    assert set(found) == set(named(passing))
    assert found["TestTable/neg"].attrib["classname"] == "example.test/passing"
    [skipped] = found["TestSkipped"].findall("skipped")
    assert "not on this machine" in skipped.attrib["message"]
    assert not list(root.iter("failure")) and not list(root.iter("error"))


def test_packages_without_tests_are_listed(gotest: RunTests) -> None:
    report = gotest("notests")
    assert report.exit_code == 0
    assert report.tests is not None
    assert report.tests.summary.packages_without_tests == ["example.test/notests/lib"]
    states = {p.package: p.state for p in report.tests.packages}
    assert states == {
        "example.test/notests/lib": PackageState.NO_TESTS,
        "example.test/notests/tested": PackageState.PASSED,
    }
    assert [t.name for t in results(report)] == ["TestFour"]


# --- failing tests and re-runs --------------------------------------------------------------------------


@pytest.mark.parametrize("reruns", [0, 1, 2])
def test_failing_test_and_subtest(gotest: RunTests, reruns: int) -> None:
    report = gotest("failing", reruns=reruns)
    assert report.exit_code == 1
    assert report.failure is not None
    failure = report.failure
    assert (failure.failure_class, failure.kind, failure.stage) == ("user", "test_failed", "test")
    assert "TestMulWrong" in report.failure.message and "TestMulTable" in report.failure.message
    assert "TestMulByTwo" not in report.failure.message
    assert stage(report).status is StageStatus.FAILED

    states = {name: [t.state for t in tests] for name, tests in named(report).items()}
    assert states == {
        "TestMulByTwo": [TestState.PASSED],
        "TestMulWrong": [TestState.FAILED],
        "TestMulTable": [TestState.FAILED],
        "TestMulTable/ones": [TestState.PASSED],
        "TestMulTable/threes": [TestState.FAILED],
    }
    # A failed test (or subtest) is re-run alone `reruns` times; a passed one ran once.
    for name in ("TestMulWrong", "TestMulTable", "TestMulTable/threes"):
        test = one(report, name)
        assert test.attempts == 1 + reruns, name
        assert test.failure_kind == "failed" and test.flaky_failures == []
    assert one(report, "TestMulByTwo").attempts == 1
    assert "Mul(3, 4) = 7, want 12" in one(report, "TestMulWrong").output
    assert "got 6, want 9" in one(report, "TestMulTable/threes").output
    assert report.tests is not None
    summary = report.tests.summary
    assert (summary.total, summary.passed, summary.failed) == (5, 2, 3)
    assert {t.name for t in summary.failures} == {"TestMulWrong", "TestMulTable", "TestMulTable/threes"}
    [package] = report.tests.packages
    assert package.state is PackageState.FAILED and package.failure_kind == "failed"


def test_junit_of_failing_tests(gotest: RunTests) -> None:
    report = gotest("failing", reruns=0)
    root = junit(report)
    assert (root.attrib["tests"], root.attrib["failures"], root.attrib["errors"]) == ("5", "3", "0")
    found = cases(root)
    failed = {name for name, case in found.items() if case.find("failure") is not None}
    assert failed == {"TestMulWrong", "TestMulTable", "TestMulTable/threes"}
    failure = found["TestMulWrong"].find("failure")
    assert failure is not None
    assert failure.attrib["type"] == "failed"
    assert "Mul(3, 4) = 7, want 12" in failure.attrib["message"]
    assert "--- FAIL: TestMulWrong" in (failure.text or "")
    assert found["TestMulByTwo"].find("failure") is None


def test_rerun_threshold_zero_reruns_nothing_and_says_so(gotest: RunTests) -> None:
    report = gotest("failing", rerun_threshold=0)
    assert report.failure is not None and report.failure.kind == "test_failed"
    assert all(t.attempts == 1 for t in results(report))
    notes = stage(report).notes
    assert any("not re-run" in note and "more than 0" in note for note in notes), notes


def test_reruns_zero_needs_no_note(gotest: RunTests) -> None:
    report = gotest("failing", reruns=0)
    assert all(t.attempts == 1 for t in results(report))
    assert not any("not re-run" in note for note in stage(report).notes)


# --- flaky tests ----------------------------------------------------------------------------------------


def test_flaky_test_warns_and_the_build_succeeds(gotest: RunTests) -> None:
    report = gotest("flaky")  # --flaky=warn by default
    assert report.exit_code == 0 and report.failure is None, report.failure
    flaky = one(report, "TestFlaky")
    assert flaky.state is TestState.FLAKY
    assert flaky.attempts == 2
    assert flaky.failure_kind is None
    assert len(flaky.flaky_failures) == 1 and "first run fails" in flaky.flaky_failures[0]
    assert one(report, "TestSteady").state is TestState.PASSED
    assert report.tests is not None
    summary = report.tests.summary
    assert (summary.total, summary.passed, summary.failed, summary.flaky) == (2, 1, 0, 1)
    assert summary.failures == []
    [package] = report.tests.packages
    assert package.state is PackageState.PASSED and package.failure_kind is None

    # JUnit: a flaky test is a pass with one <flakyFailure> per failed attempt, never a <failure>.
    root = junit(report)
    assert root.attrib["failures"] == "0" and root.attrib["errors"] == "0" and root.attrib["tests"] == "2"
    assert not list(root.iter("failure"))
    case = cases(root)["TestFlaky"]
    [attempt] = case.findall("flakyFailure")
    assert "first run fails" in attempt.attrib["message"]
    stack = attempt.find("stackTrace")
    assert stack is not None and "first run fails" in (stack.text or "")
    assert cases(root)["TestSteady"].find("flakyFailure") is None


def test_flaky_test_fails_the_build_with_flaky_fail(gotest: RunTests) -> None:
    report = gotest("flaky", flaky=FlakyPolicy.FAIL)
    assert report.exit_code == 1
    assert report.failure is not None
    assert (report.failure.failure_class, report.failure.kind) == ("user", "flaky_test")
    assert one(report, "TestFlaky").state is TestState.FLAKY
    assert report.tests is not None and report.tests.summary.flaky == 1


def test_flaky_history_counts_runs_failures_and_flakes(
    gotest: RunTests, fresh_settings: Callable[..., Settings], cli: CliFn, tmp_path: Path
) -> None:
    private = fresh_settings()  # its own data directory, so its own database
    first = gotest("flaky", settings_=private, out=tmp_path / "one")
    assert one(first, "TestFlaky").state is TestState.FLAKY
    # Each build has its own TMPDIR, so TestFlaky fails first again; without re-runs it stays failed.
    second = gotest("flaky", settings_=private, out=tmp_path / "two", reruns=0)
    assert one(second, "TestFlaky").state is TestState.FAILED and second.exit_code == 1

    with open_store(private.db_url) as store:
        repo = TestHistoryRepo(store)
        flaky = repo.get("example.test/flaky", "example.test/flaky", "TestFlaky")
        steady = repo.get("example.test/flaky", "example.test/flaky", "TestSteady")
        top = repo.top("example.test/flaky")
    assert flaky is not None and steady is not None
    assert (flaky.runs, flaky.failures, flaky.flakes) == (2, 1, 1)
    assert (steady.runs, steady.failures, steady.flakes) == (2, 0, 0)
    assert flaky.last_failure_at is not None and steady.last_failure_at is None
    assert [row.name for row in top] == ["TestFlaky", "TestSteady"]

    # `gocaas flaky` shows the same history.
    proc = cli("flaky", "--module", "example.test/flaky", settings_=private, env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]] for line in proc.stdout.splitlines() if "│" in line
    ]
    assert ["example.test/flaky", "example.test/flaky", "TestFlaky", "2", "1", "1"] in rows, proc.stdout
    assert ["example.test/flaky", "example.test/flaky", "TestSteady", "2", "0", "0"] in rows, proc.stdout


# --- timeouts, panics, test binaries that don't build, TestMain -----------------------------------------


def test_hanging_test_times_out_and_is_not_rerun(gotest: RunTests) -> None:
    report = gotest("hanging", timeout=3, shuffle="off")  # TestQuick runs before TestHang
    assert report.exit_code == 1
    assert report.failure is not None and report.failure.kind == "test_timeout"
    assert "TestHang" in report.failure.message and "TestQuick" not in report.failure.message
    hang = one(report, "TestHang")
    assert hang.state is TestState.FAILED and hang.failure_kind == "timeout"
    assert hang.attempts == 1  # a hang is not re-run: it would cost the timeout again
    assert one(report, "TestQuick").state is TestState.PASSED
    assert report.tests is not None
    [package] = report.tests.packages
    assert package.state is PackageState.FAILED and package.failure_kind == "timeout"
    assert "panic: test timed out after 3s" in hang.output + package.output
    assert not any("re-ran" in line for line in Path(stage(report).log_path or "").read_text().splitlines())


def test_panicking_test(gotest: RunTests) -> None:
    report = gotest("panicking")
    assert report.exit_code == 1
    assert report.failure is not None
    assert (report.failure.failure_class, report.failure.kind) == ("user", "test_panic")
    assert "TestBoom" in report.failure.message
    boom = one(report, "TestBoom")
    assert boom.state is TestState.FAILED and boom.failure_kind == "panic"
    assert "assignment to entry in nil map" in boom.output
    assert one(report, "TestBoom/inner").state is TestState.FAILED
    assert report.tests is not None
    [package] = report.tests.packages
    assert package.state is PackageState.FAILED and package.failure_kind == "panic"
    failure = cases(junit(report))["TestBoom"].find("failure")
    assert failure is not None and failure.attrib["type"] == "panic"
    assert failure.attrib["message"].startswith("panic: assignment to entry in nil map")


def test_test_file_that_does_not_compile(gotest: RunTests) -> None:
    report = gotest("badtest")
    assert report.exit_code == 1
    assert report.failure is not None
    assert (report.failure.failure_class, report.failure.kind, report.failure.stage) == (
        "user", "test_build_failed", "test",
    )  # fmt: skip
    assert "example.test/badtest/bad" in report.failure.message
    diagnostic = report.failure.diagnostics[0]
    assert (diagnostic.file, diagnostic.line, diagnostic.column) == ("bad/bad_test.go", 6, 17)
    assert "cannot use Three()" in diagnostic.message
    # The sibling package's tests still ran and passed.
    assert report.tests is not None
    packages = {p.package: p for p in report.tests.packages}
    assert packages["example.test/badtest/good"].state is PackageState.PASSED
    assert packages["example.test/badtest/bad"].state is PackageState.FAILED
    assert packages["example.test/badtest/bad"].failure_kind == "build_failed"
    assert [(t.package, t.name, t.state) for t in results(report)] == [
        ("example.test/badtest/good", "TestTwo", TestState.PASSED)
    ]
    # JUnit: the package that did not build carries a synthetic <error>, or viewers would show it green.
    root = junit(report)
    assert root.attrib["errors"] == "1" and root.attrib["failures"] == "0"
    suites = {s.attrib["name"]: s for s in root.iter("testsuite")}
    error = suites["example.test/badtest/bad"].find("testcase/error")
    assert error is not None and error.attrib["type"] == "build_failed"
    assert "bad_test.go:6:17" in error.attrib["message"]
    assert suites["example.test/badtest/good"].attrib["errors"] == "0"


def test_diagnostic_package_of_a_test_build_failure(gotest: RunTests) -> None:
    """Regression: go prints "# example.test/badtest/bad [example.test/badtest/bad.test]" above the
    errors, and gocaas/go/diagnostics.py parse_diagnostics takes `raw[2:].strip().strip("[]")`, which leaves
    "example.test/badtest/bad [example.test/badtest/bad.test" as the diagnostic's package."""
    report = gotest("badtest")
    assert report.failure is not None and report.failure.diagnostics
    assert report.failure.diagnostics[0].package == "example.test/badtest/bad"


def test_testmain_exiting_non_zero(gotest: RunTests) -> None:
    report = gotest("testmain")
    assert report.exit_code == 1
    assert report.failure is not None
    assert (report.failure.failure_class, report.failure.kind) == ("user", "testmain_failed")
    assert "example.test/testmain" in report.failure.message
    assert one(report, "TestOK").state is TestState.PASSED  # no test failed: TestMain did
    assert report.tests is not None
    [package] = report.tests.packages
    assert package.state is PackageState.FAILED and package.failure_kind == "testmain_exit"
    error = junit(report).find("testsuite/testcase/error")
    assert error is not None and error.attrib["type"] == "testmain_exit"


# --- coverage -------------------------------------------------------------------------------------------

_FUNC_TOTAL_RE = re.compile(r"^total:\s+\(statements\)\s+([\d.]+)%$", re.MULTILINE)


def _toolchain(settings: Settings, version: str | None) -> Toolchain:
    found = [t for t in all_known(settings) if str(t.version) == version]
    assert found, f"go {version} is neither installed nor on PATH"
    return found[0]


def _func_total(go: Toolchain, env: dict[str, str], module: Path, profile: Path) -> float:
    """The total `go tool cover -func` prints for a profile."""
    done = subprocess.run(
        [str(go.go), "tool", "cover", f"-func={profile}"],
        cwd=module, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    match = _FUNC_TOTAL_RE.search(done.stdout)
    assert match, done.stdout
    return float(match.group(1))


@pytest.mark.parametrize("coverpkg_all", [False, True])
def test_coverage_matches_go_tool_cover(
    gotest: RunTests, settings: Settings, tmp_path: Path, coverpkg_all: bool
) -> None:
    module = tmp_path / "cover"
    shutil.copytree(COVER, module)
    out = tmp_path / "out"
    report = gotest(module, out=out, coverage=True, coverpkg_all=coverpkg_all)
    assert report.exit_code == 0, report.failure
    assert report.tests is not None and report.tests.coverage is not None
    coverage = report.tests.coverage
    assert coverage.profile_path == str(out / "coverage.out") and Path(coverage.profile_path).is_file()
    assert coverage.html_path == str(out / "coverage.html")
    html = Path(coverage.html_path).read_text()
    assert "<html" in html and "calc.go" in html

    go = _toolchain(settings, report.go_version)
    dirs = BuildDirs(tmp_path / "go")
    dirs.create()
    env = go_environ(settings, go.goroot, dirs) | {"GOFLAGS": "", "GOPROXY": "off"}
    profile = Path(coverage.profile_path)
    assert coverage.total_percent == _func_total(go, env, module, profile)
    assert 0 < coverage.total_percent < 100
    lines = profile.read_text().splitlines()
    expected = {}
    for package in ("example.test/cover/calc", "example.test/cover/summary", "example.test/cover/text"):
        part = tmp_path / (package.rsplit("/", 1)[1] + ".out")
        part.write_text(
            "\n".join([lines[0], *(ln for ln in lines[1:] if ln.startswith(package + "/"))]) + "\n"
        )
        expected[package] = _func_total(go, env, module, part)
    assert coverage.packages == expected
    # Each package's result carries its own percentage.
    assert {p.package: p.coverage_percent for p in report.tests.packages} == expected
    # -coverpkg=./...: text's tests run calc.Div's error branch, which calc's own tests leave out.
    assert (expected["example.test/cover/calc"] > 50.0) is coverpkg_all


# --- shuffle, -run, -count ------------------------------------------------------------------------------


def test_shuffle_off_records_no_seed(gotest: RunTests) -> None:
    report = gotest("passing", shuffle="off")
    assert report.tests is not None and report.tests.shuffle == "off"
    [package] = report.tests.packages
    assert package.shuffle_seed is None and "-test.shuffle" not in package.output
    assert "go.shuffle_seed" not in {p.attrib["name"] for p in junit(report).iter("property")}
    # Without shuffling, go runs the tests in source order.
    top = [t.name for t in results(report) if "/" not in t.name]
    assert top == ["TestAdd", "TestTable", "TestLog", "TestSkipped"]


def test_shuffle_seed_is_passed_and_recorded(gotest: RunTests) -> None:
    report = gotest("passing", shuffle="12345")
    assert report.tests is not None and report.tests.shuffle == "12345"
    [package] = report.tests.packages
    assert package.shuffle_seed == 12345
    assert "-test.shuffle 12345" in package.output
    properties = {p.attrib["name"]: p.attrib["value"] for p in junit(report).iter("property")}
    assert properties["go.shuffle_seed"] == "12345"


def test_run_passes_through(gotest: RunTests) -> None:
    report = gotest("passing", run="TestAdd$")
    assert report.exit_code == 0
    assert [t.name for t in results(report)] == ["TestAdd"]
    sub = gotest("passing", run="TestTable/neg")
    assert sorted(named(sub)) == ["TestTable", "TestTable/neg"]


def test_count_passes_through(gotest: RunTests) -> None:
    report = gotest("passing", run="TestAdd$", count=2)
    assert report.exit_code == 0
    adds = named(report)["TestAdd"]
    assert len(adds) == 2 and all(t.state is TestState.PASSED for t in adds)
    assert report.tests is not None and report.tests.summary.total == 2
    assert len(cases_list := junit(report).findall("testsuite/testcase")) == 2
    assert {c.attrib["name"] for c in cases_list} == {"TestAdd"}


def test_count_keeps_every_attempt_when_tests_are_rerun(gotest: RunTests) -> None:
    """Regression: stages/reruns.py rerun_failures keys results by (package, name) (`by_key`), so with
    -count=2 every second attempt of every test in the run is dropped as soon as one test is re-run: 5
    results instead of 10 here (with --reruns 0 there are 10)."""
    report = gotest("failing", count=2)
    names = ("TestMulByTwo", "TestMulWrong", "TestMulTable", "TestMulTable/ones", "TestMulTable/threes")
    assert {name: len(tests) for name, tests in named(report).items()} == dict.fromkeys(names, 2)
    assert report.tests is not None and report.tests.summary.failed == 6


def test_count_does_not_hide_a_failed_attempt(gotest: RunTests) -> None:
    """Regression: with -count=2 TestFlaky fails, then passes, in the same run; rerun_failures keeps
    only the passing attempt, so the report shows no failed and no flaky test while the package stays
    failed: the build fails with "0 tests failed: example.test/flaky (failed)"."""
    report = gotest("flaky", count=2)
    attempts = named(report)["TestFlaky"]
    assert len(attempts) == 2
    assert any(t.state in (TestState.FAILED, TestState.FLAKY) for t in attempts)
    if report.failure is not None:
        assert "TestFlaky" in report.failure.message


# --- --changed-since ------------------------------------------------------------------------------------


@pytest.fixture
def multi_repo(tmp_path: Path) -> Path:
    """examples/multi as a git checkout, tagged `base`."""
    repo = copy_example("multi", tmp_path / "multi")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "tag", "base")
    return repo


def test_changed_since_runs_only_the_changed_package(gotest: RunTests, multi_repo: Path) -> None:
    main = multi_repo / "cmd" / "shout" / "main.go"
    main.write_text(main.read_text() + "\n// louder\n")
    git(multi_repo, "commit", "-q", "-am", "shout")
    report = gotest(multi_repo, changed_since="base")
    assert report.exit_code == 0, report.failure
    assert report.tests is not None
    assert [p.package for p in report.tests.packages] == ["example.com/multi/cmd/shout"]
    assert results(report) == []  # shout has no tests; greeting's did not run
    not_run = {s.package: s.reason for s in report.tests.summary.not_run}
    assert set(not_run) == {"example.com/multi/cmd/greet", "example.com/multi/greeting"}
    assert all("no change" in reason and "base" in reason for reason in not_run.values()), not_run
    assert any("--changed-since base" in note for note in stage(report).notes)


def test_changed_since_runs_the_dependents_of_a_changed_package(gotest: RunTests, multi_repo: Path) -> None:
    lib = multi_repo / "greeting" / "greeting.go"
    lib.write_text(lib.read_text() + "\n// changed, not committed\n")
    report = gotest(multi_repo, changed_since="base")
    assert report.exit_code == 0, report.failure
    assert report.tests is not None
    assert sorted(p.package for p in report.tests.packages) == [
        "example.com/multi/cmd/greet", "example.com/multi/cmd/shout", "example.com/multi/greeting",
    ]  # fmt: skip
    assert report.tests.summary.not_run == []
    assert sorted(named(report)) == ["TestFor", "TestLoud"]


# --- tiers ----------------------------------------------------------------------------------------------


@pytest.fixture
def tiered(settings: Settings) -> Settings:
    return settings.model_copy(update={"test_tiers": TIERS})


def test_default_tiers_leave_the_integration_test_out(gotest: RunTests, tiered: Settings) -> None:
    report = gotest("tiers", settings_=tiered)
    assert report.exit_code == 0, report.failure
    assert sorted(named(report)) == ["TestDouble"]


def test_integration_tier_runs_the_tagged_test(gotest: RunTests, tiered: Settings) -> None:
    report = gotest("tiers", settings_=tiered, tiers=("integration",))
    assert report.exit_code == 0, report.failure
    assert sorted(named(report)) == ["TestDouble", "TestDoubleIntegration"]
    assert one(report, "TestDoubleIntegration").state is TestState.PASSED


def test_unknown_tier_is_bad_input(gotest: RunTests, tiered: Settings) -> None:
    report = gotest("tiers", settings_=tiered, tiers=("e2e",))
    assert report.exit_code == 2
    assert report.failure is not None
    assert (report.failure.failure_class, report.failure.kind) == ("user", "bad_input")
    assert "e2e" in report.failure.message
    assert "unit" in report.failure.message and "integration" in report.failure.message


def test_rerun_uses_the_tier_the_test_ran_in(gotest: RunTests, tiered: Settings) -> None:
    """Regression: stages/test.py re-runs every failed test with `tiers[0]` (`self._run_alone(ctx,
    tiers[0], ...)`), so a test of a later tier is re-run without that tier's build tags (and timeout):
    go finds no such test, and a flaky integration test is reported as failed, failing the build."""
    report = gotest("flakytier", settings_=tiered, tiers=("unit", "integration"))
    assert one(report, "TestFlakyIntegration").state is TestState.FLAKY
    assert report.exit_code == 0, report.failure


def test_flaky_test_in_a_single_tier_is_detected(gotest: RunTests, tiered: Settings) -> None:
    report = gotest("flakytier", settings_=tiered, tiers=("integration",))
    assert report.exit_code == 0, report.failure
    flaky = one(report, "TestFlakyIntegration")
    assert flaky.state is TestState.FLAKY and flaky.attempts == 2


# --- quarantine and the flaky policy --------------------------------------------------------------------


def test_quarantined_flaky_test_does_not_fail_the_build(gotest: RunTests, tmp_path: Path) -> None:
    """Regression: a quarantined test "cannot fail the build" (quarantine.py), but stages/test.py
    _verdict raises flaky_test on `summary.flaky`, which counts quarantined flaky tests too."""
    module = tmp_path / "flaky"
    shutil.copytree(GOTEST / "flaky", module)
    (module / ".gocaas").mkdir()
    (module / ".gocaas" / "quarantine").write_text("TestFlaky\n")
    report = gotest(module, flaky=FlakyPolicy.FAIL)
    flaky = one(report, "TestFlaky")
    assert flaky.state is TestState.FLAKY and flaky.quarantined
    assert report.exit_code == 0, report.failure


def test_quarantining_a_subtest_forgives_its_parent(gotest: RunTests, tmp_path: Path) -> None:
    """Regression: go reports a parent test as failed whenever a subtest fails, so with only the subtest
    quarantined ("TestMulTable/threes", which quarantine.py documents as "one subtest"), stages/test.py
    _verdict still blocks on the parent TestMulTable: quarantining a subtest can never let the build pass."""
    module = tmp_path / "failing"
    shutil.copytree(GOTEST / "failing", module)
    (module / ".gocaas").mkdir()
    (module / ".gocaas" / "quarantine").write_text("TestMulWrong\nTestMulTable/threes\n")
    report = gotest(module, reruns=0)
    assert one(report, "TestMulTable/threes").quarantined
    assert report.exit_code == 0, report.failure


def test_changed_since_keeps_to_the_tiers_packages(
    gotest: RunTests, settings: Settings, multi_repo: Path
) -> None:
    """Regression: stages/test.py runs `packages or tier.packages`, so with --changed-since every tier
    runs every affected package, whatever its own `packages`: a tier of ./greeting/... runs cmd/shout."""
    lib_tier = settings.model_copy(
        update={"test_tiers": (TestTier(name="lib", packages=("./greeting/...",)),)}
    )
    without = gotest(multi_repo, settings_=lib_tier)
    assert without.tests is not None
    assert [p.package for p in without.tests.packages] == ["example.com/multi/greeting"]

    main = multi_repo / "cmd" / "shout" / "main.go"
    main.write_text(main.read_text() + "\n// louder\n")
    report = gotest(multi_repo, settings_=lib_tier, changed_since="base")
    assert report.tests is not None
    assert "example.com/multi/cmd/shout" not in [p.package for p in report.tests.packages]
