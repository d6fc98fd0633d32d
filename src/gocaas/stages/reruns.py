"""Flaky-test control: failed tests re-run alone, per package, up to N times.

A failed subtest re-runs its top-level test, since subtests may depend on their siblings. A test that fails
and then passes is *flaky*: it is recorded with the output of each failed attempt. When more tests failed
than the threshold, nothing is re-run: that is a broken build, not flakiness. Timeouts and build failures
are not re-run (a hang would cost the whole timeout again, and a compile error never passes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from gocaas.go.testjson import PackageRun
from gocaas.report.tests import TestResult, TestState

RERUNNABLE = frozenset({"failed", "panic"})

RunAlone = Callable[[str, list[str]], list[PackageRun]]  # (package, top-level names) -> what go reported


def top_level(name: str) -> str:
    return name.split("/", 1)[0]


def failed_top_level(tests: list[TestResult]) -> dict[str, set[str]]:
    """Package -> top-level tests with a re-runnable failure."""
    found: dict[str, set[str]] = defaultdict(set)
    for test in tests:
        if test.state is TestState.FAILED and test.failure_kind in RERUNNABLE:
            found[test.package].add(top_level(test.name))
    return dict(found)


def rerun_failures(tests: list[TestResult], reruns: int, run_alone: RunAlone) -> tuple[list[TestResult], int]:
    """Re-run failed tests; returns the updated results and how many go test runs that took.

    Results are kept by position, not name: with -count=N a test appears N times, and every attempt stays.
    """
    tests = list(tests)
    pending = failed_top_level(tests)
    failed = [i for i, t in enumerate(tests) if t.state is TestState.FAILED]
    failures = {i: [tests[i].output] for i in failed}
    invocations = 0
    for attempt in range(2, reruns + 2):
        if not pending:
            break
        for package, names in list(pending.items()):
            invocations += 1
            reran = [t for run in run_alone(package, sorted(names)) for t in run.tests]
            for name in sorted(names):
                tries = [t for t in reran if t.name == name]
                passed = bool(tries) and all(t.status == "pass" for t in tries)
                for i in failed:
                    test = tests[i]
                    if (
                        test.package != package
                        or top_level(test.name) != name
                        or test.state is not TestState.FAILED
                    ):
                        continue
                    if passed:
                        tests[i] = test.model_copy(
                            update={
                                "state": TestState.FLAKY,
                                "attempts": attempt,
                                "flaky_failures": failures[i],
                                "failure_kind": None,
                            }
                        )
                    else:
                        again = next((t for t in reran if t.name == test.name), None)
                        failures[i].append(again.output if again else "")
                        tests[i] = test.model_copy(update={"attempts": attempt})
                if passed:
                    names.discard(name)
            if not names:
                del pending[package]
    return tests, invocations
