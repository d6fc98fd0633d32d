"""Test results as JUnit XML, the format GitHub (via test-reporter actions), GitLab and Jenkins all read:
one <testsuite> per Go package, one <testcase> per test or subtest ("TestX/case")."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from gocaas.atomic import replacing
from gocaas.report.tests import PackageResult, PackageState, TestResult, TestState

# XML 1.0 allows tab, LF, CR and everything from U+0020 except surrogates and U+FFFE/U+FFFF; test output
# (terminal colours, binary dumps) carries the rest and would make the whole file unreadable.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MESSAGE_LIMIT = 200
# Lines of go's own test framing, never the interesting line for a failure message.
_FRAMING = re.compile(r"^(=== (RUN|PAUSE|CONT|NAME)|--- (FAIL|PASS|SKIP):|FAIL$|PASS$|ok  |FAIL\t)")

# What a synthetic testcase says when the package output has no telling line of its own.
_PACKAGE_FAILURES = {
    "build_failed": "the test binary did not build",
    "testmain_exit": "TestMain exited with a failure status",
    "timeout": "the test binary timed out",
    "panic": "the test binary panicked outside a test",
}


def clean(text: str) -> str:
    """Text with the characters XML 1.0 forbids removed, and CR LF / CR as LF (what any XML reader would
    turn them into anyway, so the file reads back as written)."""
    return _XML_FORBIDDEN.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _message(output: str, fallback: str) -> str:
    """The first telling line of a test's output: the panic, the t.Error line, the compiler error."""
    lines = [line.strip() for line in output.splitlines()]
    telling = [line for line in lines if line and not _FRAMING.match(line) and not line.startswith("#")]
    panic = next((line for line in telling if line.startswith("panic: ")), None)
    message = panic or (telling[0] if telling else fallback)
    return clean(message[:_MESSAGE_LIMIT])


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {key: clean(value) for key, value in attrs.items()})
    if text is not None:
        element.text = clean(text)
    return element


def _testcase(suite: ET.Element, test: TestResult) -> tuple[int, int]:
    """Add one testcase; return (failures, skipped) it counts for."""
    case = _sub(suite, "testcase", classname=test.package, name=test.name, time=_seconds(test.duration_s))
    if test.quarantined:
        # Still a <failure> below, so CI viewers keep showing it (red, but known); the property says why the
        # build did not fail on it.
        properties = _sub(case, "properties")
        _sub(properties, "property", name="quarantined", value="true")
    if test.state is TestState.FAILED:
        kind = "quarantined" if test.quarantined else (test.failure_kind or "failed")
        _sub(case, "failure", test.output, message=_message(test.output, f"{test.name} failed"), type=kind)
        return 1, 0
    if test.state is TestState.SKIPPED:
        _sub(case, "skipped", message=_message(test.output, "skipped"))
        return 0, 1
    if test.state is TestState.FLAKY:
        # Recorded as passed (it did pass when re-run) with Maven Surefire's <flakyFailure> per failed
        # attempt: Jenkins and GitLab show the attempts without turning the report red.
        for failed_output in test.flaky_failures:
            flaky = _sub(case, "flakyFailure", message=_message(failed_output, "failed"), type="failed")
            _sub(flaky, "stackTrace", failed_output)
            _sub(flaky, "system-out", failed_output)
    return 0, 0


def _build_root(
    packages: Sequence[PackageResult],
    tests: Sequence[TestResult],
    properties: Mapping[str, str],
    timestamp: str,
) -> ET.Element:
    by_package: dict[str, list[TestResult]] = {}
    for test in tests:
        by_package.setdefault(test.package, []).append(test)
    known = {package.package: package for package in packages}
    names = [package.package for package in packages] + [name for name in by_package if name not in known]

    root = ET.Element("testsuites", name="gocaas")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for name in names:
        package = known.get(name)
        duration = package.duration_s if package else sum(t.duration_s for t in by_package.get(name, []))
        suite = _sub(root, "testsuite", name=name, timestamp=timestamp, time=_seconds(duration))
        suite_properties = dict(properties)
        if package and package.shuffle_seed is not None:
            suite_properties["go.shuffle_seed"] = str(package.shuffle_seed)
        if package and package.cached:
            suite_properties["go.cached"] = "true"
        if suite_properties:
            element = _sub(suite, "properties")
            for key, value in suite_properties.items():
                _sub(element, "property", name=key, value=value)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for test in by_package.get(name, []):
            failures, skipped = _testcase(suite, test)
            counts["tests"] += 1
            counts["failures"] += failures
            counts["skipped"] += skipped
        if (
            package is not None
            and package.state is PackageState.FAILED
            and not any(t.state is TestState.FAILED for t in by_package.get(name, []))
        ):
            # The package failed with no failing test to show it (build failure, TestMain exit, a timeout
            # go could not pin on a test): a synthetic testcase carries it, or viewers would show green.
            kind = package.failure_kind or "failed"
            case = _sub(suite, "testcase", classname=name, name=kind, time=_seconds(package.duration_s))
            message = _message(package.output, _PACKAGE_FAILURES.get(kind, "the package failed"))
            _sub(case, "error", package.output, message=message, type=kind)
            counts["tests"] += 1
            counts["errors"] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        total_time += duration
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(total_time))
    return root


def write_junit(
    dest: Path,
    packages: Sequence[PackageResult],
    tests: Sequence[TestResult],
    *,
    properties: Mapping[str, str] = {},  # only read, so one shared default is safe
    timestamp: datetime | None = None,
) -> Path:
    """Write the JUnit XML file atomically (a reader never sees half a file) and return its path."""
    when = (timestamp or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    root = _build_root(packages, tests, properties, when)
    ET.indent(root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with replacing(dest) as tmp, tmp.open("wb") as handle:
        ET.ElementTree(root).write(handle, encoding="utf-8", xml_declaration=True)
        handle.flush()
        os.fsync(handle.fileno())
    return dest
