"""JUnit XML from test results: written, then read back as a CI server would."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from gocaas.report.junit import clean, write_junit
from gocaas.report.tests import PackageResult, PackageState
from gocaas.report.tests import TestResult as Result
from gocaas.report.tests import TestState as State  # not "Test*" names: pytest would collect them

APP = "example.test/app"
BROKEN = "example.test/broken"
MAINEXIT = "example.test/mainexit"
EMPTY = "example.test/empty"

PACKAGES = [
    PackageResult(
        package=APP, state=PackageState.FAILED, duration_s=1.25, failure_kind="failed", shuffle_seed=42
    ),
    PackageResult(
        package=BROKEN,
        state=PackageState.FAILED,
        failure_kind="build_failed",
        output="# example.test/broken [example.test/broken.test]\n./x_test.go:3:1: undefined: y\n",
    ),
    PackageResult(
        package=MAINEXIT,
        state=PackageState.FAILED,
        failure_kind="testmain_exit",
        output="PASS\nFAIL\tx\t0.1s\n",
    ),
    PackageResult(package=EMPTY, state=PackageState.NO_TESTS),
]

TESTS = [
    Result(package=APP, name="TestOK", state=State.PASSED, duration_s=0.5),
    Result(package=APP, name="TestTable/case_1", state=State.PASSED),
    Result(
        package=APP,
        name="TestWrong",
        state=State.FAILED,
        failure_kind="failed",
        output="=== RUN   TestWrong\n    x_test.go:9: got 1, want 2\n--- FAIL: TestWrong (0.00s)\n",
    ),
    Result(
        package=APP,
        name="TestBoom",
        state=State.FAILED,
        failure_kind="panic",
        output="=== RUN   TestBoom\npanic: runtime error: index out of range [recovered]\n",
    ),
    Result(
        package=APP,
        name="TestHang",
        state=State.FAILED,
        failure_kind="timeout",
        output="=== RUN   TestHang\npanic: test timed out after 3s\n\trunning tests:\n\t\tTestHang (3s)\n",
    ),
    Result(
        package=APP,
        name="TestSkip",
        state=State.SKIPPED,
        output="=== RUN   TestSkip\n    x_test.go:20: needs a database\n--- SKIP: TestSkip (0.00s)\n",
    ),
    Result(
        package=APP,
        name="TestFlaky",
        state=State.FLAKY,
        attempts=3,
        output="--- PASS: TestFlaky (0.00s)\n",
        flaky_failures=["    x_test.go:30: first\n", "    x_test.go:30: second\n"],
    ),
    Result(
        package=APP,
        name="TestKnownBad",
        state=State.FAILED,
        failure_kind="failed",
        quarantined=True,
        output="    x_test.go:40: still broken\n",
    ),
    Result(package=MAINEXIT, name="TestFine", state=State.PASSED),
]


def write_and_parse(tmp_path: Path, **kwargs: object) -> ET.Element:
    path = write_junit(tmp_path / "out" / "junit.xml", PACKAGES, TESTS, **kwargs)  # type: ignore[arg-type]
    assert path == tmp_path / "out" / "junit.xml"
    assert [p.name for p in path.parent.iterdir()] == ["junit.xml"]  # no temporary file left behind
    return ET.parse(path).getroot()


def suite(root: ET.Element, name: str) -> ET.Element:
    (found,) = [s for s in root.iter("testsuite") if s.get("name") == name]
    return found


def case(root: ET.Element, classname: str, name: str) -> ET.Element:
    (found,) = [c for c in root.iter("testcase") if c.get("classname") == classname and c.get("name") == name]
    return found


def test_suites_and_counts(tmp_path: Path) -> None:
    root = write_and_parse(tmp_path, timestamp=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert root.tag == "testsuites"
    assert [s.get("name") for s in root.iter("testsuite")] == [APP, BROKEN, MAINEXIT, EMPTY]
    app = suite(root, APP)
    # The flaky test passed on a re-run: a test, not a failure; the quarantined one still counts.
    assert {k: app.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "8",
        "failures": "4",
        "errors": "0",
        "skipped": "1",
    }
    assert app.get("time") == "1.250"
    assert app.get("timestamp") == "2025-01-02T03:04:05"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "11",
        "failures": "4",
        "errors": "2",
        "skipped": "1",
    }
    assert suite(root, EMPTY).get("tests") == "0"
    seed = app.find("properties/property[@name='go.shuffle_seed']")
    assert seed is not None and seed.get("value") == "42"


def test_failures_skips_and_subtests(tmp_path: Path) -> None:
    root = write_and_parse(tmp_path)
    assert case(root, APP, "TestOK").get("time") == "0.500"
    assert list(case(root, APP, "TestOK")) == []
    assert list(case(root, APP, "TestTable/case_1")) == []

    wrong = case(root, APP, "TestWrong").find("failure")
    assert wrong is not None
    assert wrong.get("type") == "failed"
    assert wrong.get("message") == "x_test.go:9: got 1, want 2"
    assert "--- FAIL: TestWrong" in (wrong.text or "")

    boom = case(root, APP, "TestBoom").find("failure")
    assert boom is not None and boom.get("type") == "panic"
    assert boom.get("message") == "panic: runtime error: index out of range [recovered]"
    hang = case(root, APP, "TestHang").find("failure")
    assert hang is not None and hang.get("type") == "timeout"
    assert hang.get("message") == "panic: test timed out after 3s"

    skipped = case(root, APP, "TestSkip").find("skipped")
    assert skipped is not None and skipped.get("message") == "x_test.go:20: needs a database"


def test_flaky_test_is_a_pass_with_flaky_failures(tmp_path: Path) -> None:
    flaky = case(write_and_parse(tmp_path), APP, "TestFlaky")
    assert flaky.find("failure") is None and flaky.find("error") is None
    attempts = flaky.findall("flakyFailure")
    assert [a.findtext("stackTrace") for a in attempts] == [
        "    x_test.go:30: first\n",
        "    x_test.go:30: second\n",
    ]
    assert [a.findtext("system-out") for a in attempts] == [a.findtext("stackTrace") for a in attempts]
    assert [a.get("message") for a in attempts] == ["x_test.go:30: first", "x_test.go:30: second"]


def test_quarantined_failure_stays_visible(tmp_path: Path) -> None:
    known = case(write_and_parse(tmp_path), APP, "TestKnownBad")
    failure = known.find("failure")
    assert failure is not None and failure.get("type") == "quarantined"
    prop = known.find("properties/property")
    assert prop is not None and (prop.get("name"), prop.get("value")) == ("quarantined", "true")


def test_package_failures_without_a_failing_test_get_a_synthetic_case(tmp_path: Path) -> None:
    root = write_and_parse(tmp_path)
    broken = case(root, BROKEN, "build_failed").find("error")
    assert broken is not None and broken.get("type") == "build_failed"
    assert "undefined: y" in (broken.text or "")
    assert broken.get("message") == "./x_test.go:3:1: undefined: y"
    assert suite(root, BROKEN).get("errors") == "1" and suite(root, BROKEN).get("tests") == "1"

    mainexit = suite(root, MAINEXIT)
    assert [c.get("name") for c in mainexit.iter("testcase")] == ["TestFine", "testmain_exit"]
    assert mainexit.get("errors") == "1" and mainexit.get("failures") == "0"
    error = case(root, MAINEXIT, "testmain_exit").find("error")
    assert error is not None and error.get("message") == "TestMain exited with a failure status"
    # A package whose failing test shows the failure gets no synthetic case.
    assert [c for c in suite(root, APP).iter("testcase") if c.get("name") == "failed"] == []


def test_properties_on_every_suite(tmp_path: Path) -> None:
    root = write_and_parse(tmp_path, properties={"go.version": "go1.26.0", "target": "linux/amd64"})
    for element in root.iter("testsuite"):
        values = {p.get("name"): p.get("value") for p in element.iterfind("properties/property")}
        assert values["go.version"] == "go1.26.0" and values["target"] == "linux/amd64"


def test_control_characters_give_valid_xml(tmp_path: Path) -> None:
    nasty = "colour \x1b[31mred\x1b[0m bell\x07 nul\x00 form\x0c ok\ttab\r\n" + "\ud800 lone surrogate\n"
    tests = [
        Result(package="p", name="TestNasty\x01", state=State.FAILED, output=nasty),
        Result(package="p", name="TestFlaky", state=State.FLAKY, flaky_failures=[nasty]),
    ]
    packages = [PackageResult(package="p", state=PackageState.FAILED, output=nasty)]
    path = write_junit(tmp_path / "junit.xml", packages, tests, properties={"note": "a\x02b"})
    root = ET.parse(path).getroot()  # raises on a character XML 1.0 forbids
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.text == clean(nasty) == "colour [31mred[0m bell nul form ok\ttab\n lone surrogate\n"
    assert (
        "\x1b" not in (failure.text or "")
        and "red" in (failure.text or "")
        and "\ttab" in (failure.text or "")
    )
    assert root.find("testsuite/testcase").get("name") == "TestNasty"  # type: ignore[union-attr]
    assert root.find("testsuite/properties/property").get("value") == "ab"  # type: ignore[union-attr]


def test_tests_of_unlisted_packages_still_get_a_suite(tmp_path: Path) -> None:
    tests = [Result(package="q", name="TestQ", state=State.PASSED, duration_s=0.25)]
    root = ET.parse(write_junit(tmp_path / "j.xml", [], tests)).getroot()
    assert suite(root, "q").get("tests") == "1" and suite(root, "q").get("time") == "0.250"


def test_overwrites_atomically(tmp_path: Path) -> None:
    dest = tmp_path / "junit.xml"
    dest.write_text("old")
    write_junit(dest, PACKAGES, TESTS)
    assert ET.parse(dest).getroot().tag == "testsuites"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml"]
