"""The test-history repository's contract, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gocaas.store import Store, TestHistoryRepo, TestOutcome, open_store

M = "example.test/m"
P = "example.test/m/pkg"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_records_accumulate_across_builds_and_stores(db_url: str) -> None:
    with open_store(db_url) as first:  # build 1
        TestHistoryRepo(first).record(M, [TestOutcome(P, "TestA", failed=False)], at=T0)
    with open_store(db_url) as second:  # build 2, another process later
        repo = TestHistoryRepo(second)
        repo.record(M, [TestOutcome(P, "TestA", failed=True)], at=T0 + timedelta(hours=1))
        got = repo.get(M, P, "TestA")
    assert got is not None
    assert (got.runs, got.failures, got.flakes) == (2, 1, 0)
    assert got.first_run_at == T0
    assert got.last_run_at == got.last_failure_at == T0 + timedelta(hours=1)
    assert got.last_run_at.tzinfo is not None


def test_counters_and_flakiest_first(store: Store) -> None:
    repo = TestHistoryRepo(store)
    for build in range(10):
        repo.record(
            M,
            [
                TestOutcome(P, "TestStable", failed=False),
                TestOutcome(P, "TestBroken", failed=build >= 4),  # 6 failures, never flaky
                TestOutcome(P, "TestFlaky", failed=False, flaky=build % 3 == 0),  # 4 flakes
                TestOutcome(P, "TestBoth", failed=build % 5 == 0, flaky=build % 5 == 1),  # 2 and 2
            ],
        )
    top = repo.top(M)
    assert [(t.name, t.runs, t.failures, t.flakes) for t in top] == [
        ("TestFlaky", 10, 0, 4),
        ("TestBoth", 10, 2, 2),
        ("TestBroken", 10, 6, 0),
        ("TestStable", 10, 0, 0),
    ]
    stable = repo.get(M, P, "TestStable")
    assert stable is not None and stable.last_failure_at is None
    assert [t.name for t in repo.top(M, limit=2)] == ["TestFlaky", "TestBoth"]


def test_top_filters_by_module(store: Store) -> None:
    repo = TestHistoryRepo(store)
    repo.record("example.test/a", [TestOutcome("a", "TestX", failed=True, flaky=True)])
    repo.record("example.test/b", [TestOutcome("b", "TestX", failed=True, flaky=True)] * 3)
    assert [(t.module, t.flakes) for t in repo.top()] == [("example.test/b", 3), ("example.test/a", 1)]
    assert [t.module for t in repo.top("example.test/a")] == ["example.test/a"]
    assert repo.top("example.test/none") == []


def test_same_test_in_other_package_or_module_is_another_test(store: Store) -> None:
    repo = TestHistoryRepo(store)
    repo.record(M, [TestOutcome(P, "TestA", failed=False), TestOutcome(P + "/sub", "TestA", failed=True)])
    repo.record("example.test/other", [TestOutcome(P, "TestA", failed=True)])
    a = repo.get(M, P, "TestA")
    assert a is not None and (a.runs, a.failures) == (1, 0)
    sub = repo.get(M, P + "/sub", "TestA")
    assert sub is not None and (sub.runs, sub.failures) == (1, 1)
    assert repo.get(M, P, "TestMissing") is None


def test_repeated_outcomes_and_large_batches_in_one_record(store: Store) -> None:
    repo = TestHistoryRepo(store)
    outcomes = [TestOutcome(P, f"Test{i:03d}", failed=i % 2 == 0) for i in range(250)]
    outcomes += [TestOutcome(P, "Test000", failed=False, flaky=True)] * 2  # e.g. -count=3
    assert repo.record(M, outcomes) == 250
    t0 = repo.get(M, P, "Test000")
    assert t0 is not None and (t0.runs, t0.failures, t0.flakes) == (3, 1, 2)
    assert len(repo.top(M, limit=1000)) == 250
    assert repo.record(M, []) == 0


def test_last_times_never_go_back(store: Store) -> None:
    repo = TestHistoryRepo(store)
    later = T0 + timedelta(days=1)
    repo.record(M, [TestOutcome(P, "TestA", failed=True)], at=later)
    repo.record(M, [TestOutcome(P, "TestA", failed=True)], at=T0)  # a slow build finishing late
    repo.record(M, [TestOutcome(P, "TestA", failed=False)], at=T0 + timedelta(hours=1))
    got = repo.get(M, P, "TestA")
    assert got is not None
    assert got.runs == 3 and got.last_run_at == later and got.last_failure_at == later
    assert got.first_run_at == later  # the first recorded, not the earliest stamped


def test_times_are_stored_in_utc(store: Store) -> None:
    repo = TestHistoryRepo(store)
    plus2 = datetime(2025, 3, 1, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    repo.record(M, [TestOutcome(P, "TestA", failed=False)], at=plus2)
    got = repo.get(M, P, "TestA")
    assert got is not None and got.last_run_at == plus2 and got.last_run_at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="naive"):
        repo.record(M, [TestOutcome(P, "TestA", failed=False)], at=datetime(2025, 1, 1))


def test_top_refuses_a_negative_limit(store: Store) -> None:
    with pytest.raises(ValueError, match="negative"):
        TestHistoryRepo(store).top(limit=-1)
    assert TestHistoryRepo(store).top(limit=0) == []
