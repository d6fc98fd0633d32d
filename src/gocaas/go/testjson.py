"""`go test -json` parsed as it streams: one PackageRun per package run, with its tests, the seed it was
shuffled with, and why it failed (build, timeout, panic, TestMain). Event shapes are test2json's
(`go doc test2json`) plus, since Go 1.24, the go command's build-output / build-fail events."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gocaas.report.tests import PackageResult, PackageState, TestResult, TestState

Status = Literal["pass", "fail", "skip"]

# Output is kept per test and per package as its last 64 Ki characters: a chatty or looping test must not
# grow the parser (and then the report) without bound, and the end of the output is where the failure is.
OUTPUT_LIMIT = 64 * 1024

_COVER_ONLY = re.compile(r"^\t\S+\t+coverage: ")
_SEED = re.compile(r"^-test\.shuffle (-?\d+)$")
_RUNNING = re.compile(r"^\t\t(\S+) \([^)]*\)$")  # "\t\tTestHang (2s)" under "running tests:"
_BUILD_HEADER = re.compile(r"^# (\S+)( \[[^\]]+\])?$")  # "# pkg [pkg.test]" before plain-text build errors
_STATUS: dict[str, Status] = {"pass": "pass", "fail": "fail", "skip": "skip", "bench": "pass"}
_NOT_FINISHED = "gocaas: the test binary exited before this test finished\n"
_KILLED = "gocaas: the go command ended before this package finished\n"


@dataclass
class TestRun:
    __test__ = False  # not a pytest class, despite the name

    package: str
    name: str
    status: Status
    duration_s: float = 0.0
    output: str = ""
    failure_kind: str | None = None  # failed | panic | timeout, for a failed test


@dataclass
class PackageRun:
    package: str
    status: Status
    duration_s: float = 0.0
    output: str = ""  # package-level output, not belonging to a test
    tests: list[TestRun] = field(default_factory=list)
    no_test_files: bool = False
    cached: bool = False
    build_failed: bool = False
    build_output: str = ""
    shuffle_seed: int | None = None
    timed_out: bool = False  # also when go could not say which test was running
    timed_out_test: str | None = None
    panicked: bool = False  # also for a panic outside any test (init, TestMain)
    panicked_test: str | None = None  # the top-level test
    testmain_failed: bool = False


class _Tail:
    """An append-only text buffer that keeps only about its last OUTPUT_LIMIT characters."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._dropped = False

    def append(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size > 2 * OUTPUT_LIMIT:  # compact now and then, not on every append
            joined = "".join(self._parts)[-OUTPUT_LIMIT:]
            self._parts, self._size, self._dropped = [joined], len(joined), True

    def text(self) -> str:
        joined = "".join(self._parts)
        return trim_output(_TRIMMED + joined if self._dropped else joined)


_TRIMMED = "[earlier output trimmed]\n"


def trim_output(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """The last `limit` characters of text, marked when cut (idempotent: the mark counts in the limit)."""
    if len(text) <= limit:
        return text
    return _TRIMMED + text[-(limit - len(_TRIMMED)) :]


def _top(name: str) -> str:
    return name.split("/", 1)[0]


def _float(value: Any) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _seconds(start: str | None, end: str | None) -> float:
    try:
        return max(
            0.0, (datetime.fromisoformat(end or "") - datetime.fromisoformat(start or "")).total_seconds()
        )
    except ValueError:
        return 0.0


@dataclass
class _OpenTest:
    run: TestRun
    out: _Tail
    started: str | None


class _OpenPackage:
    def __init__(self, package: str, time: str | None) -> None:
        self.run = PackageRun(package=package, status="fail")
        self.out = _Tail()
        self.tests: list[_OpenTest] = []
        self.open: dict[str, _OpenTest] = {}  # running (or paused) tests by name
        self.latest: dict[str, _OpenTest] = {}  # the last attempt of each test, finished or not
        self.started = self.last = time
        self.timing_out = False
        self.listing_running = False
        self.running_at_timeout: list[str] = []
        self.panicked_tests: set[str] = set()
        self.failed_build: str | None = None


class TestStreamParser:
    """Feed it `go test -json` lines (stdout, stderr merged or not) as they come."""

    __test__ = False

    def __init__(self) -> None:
        self._runs: list[PackageRun] = []
        self._open: dict[str, _OpenPackage] = {}
        self._build_output: dict[str, _Tail] = {}  # by ImportPath ("pkg [pkg.test]") or "# header"
        self._stray = _Tail()
        self._stray_header: str | None = None

    @property
    def stray_output(self) -> str:
        """Lines that were not events of a package: plain-text build errors, go's own messages."""
        return self._stray.text()

    def feed(self, line: str) -> list[PackageRun]:
        """Parse one line; return the packages this line finished."""
        line = line.rstrip("\r\n")
        if not line.strip():
            return []
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("Action"), str):
            self._stray_line(line)
            return []
        action: str = event["Action"]
        if action in ("build-output", "build-fail"):
            path = str(event.get("ImportPath", ""))
            buffer = self._build_output.setdefault(path, _Tail())
            buffer.append(str(event.get("Output", "")))
            return []
        package = event.get("Package")
        if not isinstance(package, str) or not package:
            if action == "output":
                self._stray.append(str(event.get("Output", "")))
            return []
        return self._event(package, action, event)

    def finish(self) -> list[PackageRun]:
        """Every package, in first-seen order; those still open (go was killed) are closed as failed."""
        for state in list(self._open.values()):
            state.out.append(_KILLED)
            self._close(state, "fail", _seconds(state.started, state.last), killed=True)
        return list(self._runs)

    def _stray_line(self, line: str) -> None:
        self._stray.append(line + "\n")
        # Before Go 1.24 (or with GODEBUG=gotestjsonbuildtext=1) build errors come as plain text under a
        # "# pkg [pkg.test]" header: keep them by header so the failed package can still show them.
        header = _BUILD_HEADER.match(line)
        if header:
            self._stray_header = header[1] + (header[2] or "")
        elif self._stray_header is not None:
            self._build_output.setdefault(self._stray_header, _Tail()).append(line + "\n")

    def _event(self, package: str, action: str, event: dict[str, Any]) -> list[PackageRun]:
        time = event.get("Time") if isinstance(event.get("Time"), str) else None
        state = self._open.get(package)
        if state is None:
            state = self._open[package] = _OpenPackage(package, time)
            self._runs.append(state.run)
        state.last = time or state.last
        test = event.get("Test") if isinstance(event.get("Test"), str) else None
        elapsed = _float(event.get("Elapsed"))
        if action == "output":
            self._output(state, test, str(event.get("Output", "")))
        elif test is None:
            if action in ("pass", "fail", "skip"):  # the package's end
                failed_build = event.get("FailedBuild")
                state.failed_build = failed_build if isinstance(failed_build, str) else None
                return [self._close(state, _STATUS[action], elapsed)]
        elif action == "run":
            # A name seen again (-count=N) is a new attempt: a new TestRun.
            opened = _OpenTest(TestRun(package, test, "fail"), _Tail(), time)
            state.tests.append(opened)
            state.open[test] = state.latest[test] = opened
        elif action in ("pass", "fail", "skip", "bench"):
            opened = state.open.pop(test, None)
            if opened is not None:
                opened.run.status = _STATUS[action]
                opened.run.duration_s = elapsed
        return []

    def _output(self, state: _OpenPackage, test: str | None, text: str) -> None:
        owner = state.latest.get(test) if test else None  # also a line after the test's own end
        (owner.out if owner else state.out).append(text)
        line = text.rstrip("\n")
        if line.startswith("panic: test timed out after"):
            state.timing_out = state.listing_running = True
            state.run.timed_out = True
            if test or state.open:  # older toolchains print no "running tests:" list
                state.running_at_timeout = [test or next(reversed(state.open))]
            return
        if state.listing_running:
            if line.strip() == "running tests:":
                state.running_at_timeout = []
                return
            running = _RUNNING.match(line)
            if running:
                state.running_at_timeout.append(running[1])
                return
            state.listing_running = False
        if line.startswith("panic: ") and not state.timing_out and not state.run.panicked:
            state.run.panicked = True
            culprit = test if test in state.open else next(reversed(state.open), None)
            if culprit is not None:
                state.run.panicked_test = _top(culprit)
                # The culprit and its still-running parents die of the panic; siblings finished before.
                state.panicked_tests = {name for name in state.open if _top(name) == _top(culprit)}
        if test is None:
            seed = _SEED.match(line)
            if seed:
                state.run.shuffle_seed = int(seed[1])

    def _close(self, state: _OpenPackage, status: Status, elapsed: float, killed: bool = False) -> PackageRun:
        run = state.run
        del self._open[run.package]
        if state.running_at_timeout:
            leaves = [
                n
                for n in state.running_at_timeout
                if not any(o.startswith(n + "/") for o in state.running_at_timeout)
            ]
            run.timed_out_test = leaves[0] if leaves else state.running_at_timeout[0]
        for opened in state.open.values():  # no pass/fail event: the binary died (timeout, panic, os.Exit)
            opened.run.status = "fail"
            opened.run.duration_s = _seconds(opened.started, state.last)
            opened.out.append(_NOT_FINISHED)
        for opened in state.tests:
            if opened.run.status == "fail":
                opened.run.failure_kind = "failed"
                if opened.run.name in state.panicked_tests:
                    opened.run.failure_kind = "panic"
                if opened.run.name in state.running_at_timeout:
                    opened.run.failure_kind = "timeout"
            opened.run.output = opened.out.text()
            run.tests.append(opened.run)
        run.status, run.duration_s, run.output = status, elapsed, state.out.text()
        last_line = next((ln for ln in reversed(run.output.splitlines()) if ln.strip()), "")
        # With -cover, go reports a package without tests as "\tpkg\t\tcoverage: 0.0% of statements".
        run.no_test_files = "[no test files]" in last_line or (
            status == "pass" and not run.tests and bool(_COVER_ONLY.match(last_line))
        )
        run.cached = "(cached)" in last_line
        if state.failed_build is not None or "[build failed]" in last_line or "[setup failed]" in last_line:
            run.build_failed = True
            run.build_output = self._build_text(state.failed_build, run.package)
        run.testmain_failed = (
            status == "fail"
            and not (killed or run.build_failed or run.timed_out or run.panicked)
            and not any(t.status == "fail" for t in run.tests)
        )
        return run

    def _build_text(self, failed_build: str | None, package: str) -> str:
        if failed_build is not None and failed_build in self._build_output:
            return self._build_output[failed_build].text()
        for key, buffer in self._build_output.items():  # plain-text build errors, by "# pkg [pkg.test]"
            if key == package or key.startswith(package + " ["):
                return buffer.text()
        return ""


def _package_kind(run: PackageRun) -> str | None:
    if run.status != "fail":
        return None
    if run.build_failed:
        return "build_failed"
    if run.timed_out:
        return "timeout"
    if run.panicked:
        return "panic"
    return "testmain_exit" if run.testmain_failed else "failed"


_PACKAGE_STATE = {"pass": PackageState.PASSED, "fail": PackageState.FAILED, "skip": PackageState.SKIPPED}
_TEST_STATE = {"pass": TestState.PASSED, "fail": TestState.FAILED, "skip": TestState.SKIPPED}


def to_results(runs: list[PackageRun]) -> tuple[list[PackageResult], list[TestResult]]:
    """The report's models for parsed runs. Outputs are trimmed to their last OUTPUT_LIMIT characters (the
    parser already keeps no more; runs built by hand are trimmed here)."""
    packages: list[PackageResult] = []
    tests: list[TestResult] = []
    for run in runs:
        output = f"{run.build_output}{run.output}" if run.build_failed else run.output
        packages.append(
            PackageResult(
                package=run.package,
                state=PackageState.NO_TESTS if run.no_test_files else _PACKAGE_STATE[run.status],
                duration_s=run.duration_s,
                cached=run.cached,
                shuffle_seed=run.shuffle_seed,
                failure_kind=_package_kind(run),
                output=trim_output(output),
            )
        )
        tests.extend(
            TestResult(
                package=test.package,
                name=test.name,
                state=_TEST_STATE[test.status],
                duration_s=test.duration_s,
                output=trim_output(test.output),
                failure_kind=(test.failure_kind or "failed") if test.status == "fail" else None,
            )
            for test in run.tests
        )
    return packages, tests
