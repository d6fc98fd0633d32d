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
    """Re-run failed tests; returns the updated results and how many re-runs of a package were made."""
    pending = failed_top_level(tests)
    failures: dict[tuple[str, str], list[str]] = {
        (t.package, t.name): [t.output] for t in tests if t.state is TestState.FAILED
    }
    by_key = {(t.package, t.name): t for t in tests}
    invocations = 0
    for attempt in range(2, reruns + 2):
        if not pending:
            break
        for package, names in list(pending.items()):
            invocations += 1
            runs = run_alone(package, sorted(names))
            outcome = {t.name: t for run in runs for t in run.tests}
            for name in sorted(names):
                again = outcome.get(name)
                passed = again is not None and again.status == "pass"
                for key, test in by_key.items():
                    if key[0] != package or top_level(key[1]) != name or test.state is not TestState.FAILED:
                        continue
                    if passed:
                        by_key[key] = test.model_copy(
                            update={
                                "state": TestState.FLAKY,
                                "attempts": attempt,
                                "flaky_failures": failures[key],
                                "failure_kind": None,
                            }
                        )
                    else:
                        rerun = outcome.get(key[1])
                        failures[key].append(rerun.output if rerun else (again.output if again else ""))
                        by_key[key] = test.model_copy(update={"attempts": attempt})
                if passed:
                    names.discard(name)
            if not names:
                del pending[package]
    return list(by_key.values()), invocations
