"""Code run in child processes by the concurrency tests (importable, as spawned children need)."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from multiprocessing.context import SpawnContext
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from gocaas.store import TestHistoryRepo, TestOutcome, open_store

MODULE = "example.test/concurrent"
PACKAGE = "example.test/concurrent/pkg"


def outcomes(build: int) -> list[TestOutcome]:
    """The same three tests in every build: one stable, one failing every 5th build, one flaky every 10th."""
    return [
        TestOutcome(PACKAGE, "TestStable", failed=False),
        TestOutcome(PACKAGE, "TestFails", failed=build % 5 == 0),
        TestOutcome(PACKAGE, "TestFlaky", failed=False, flaky=build % 10 == 0),
    ]


def record_builds(url: str, builds: int, barrier: Barrier) -> int:
    with open_store(url) as store:
        repo = TestHistoryRepo(store)
        barrier.wait(timeout=120)
        for build in range(builds):
            repo.record(MODULE, outcomes(build))
    return builds


def open_at_once(url: str, barrier: Barrier) -> tuple[str | None, str]:
    barrier.wait(timeout=120)
    with open_store(url) as store:
        return store.migration.before, store.migration.after


def _child(target: Callable[..., Any], args: tuple[Any, ...], barrier: Barrier, results: Queue[Any]) -> None:
    try:
        results.put(("ok", target(*args, barrier)))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def run_at_once(
    ctx: SpawnContext, target: Callable[..., Any], args: tuple[Any, ...], processes: int
) -> list[Any]:
    """Run target(*args, barrier) in `processes` spawned processes that pass a barrier together; their
    results, or an AssertionError with the children's tracebacks."""
    barrier = ctx.Barrier(processes)
    results: Queue[Any] = ctx.Queue()
    children = [ctx.Process(target=_child, args=(target, args, barrier, results)) for _ in range(processes)]
    for child in children:
        child.start()
    outcomes_ = [results.get(timeout=300) for _ in children]
    for child in children:
        child.join(timeout=60)
    errors = [detail for status, detail in outcomes_ if status == "error"]
    assert not errors, "\n".join(errors)
    assert all(child.exitcode == 0 for child in children), [child.exitcode for child in children]
    return [detail for _, detail in outcomes_]
