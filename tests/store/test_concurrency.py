"""Several processes at once: no lost update, no "database is locked", one migration."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import pytest

from gocaas.store import Store, TestHistoryRepo, head_revision, open_store
from tests.store import workers

SPAWN = multiprocessing.get_context("spawn")


def test_concurrent_recording_loses_nothing(db_url: str) -> None:
    processes, builds = 4, 50
    open_store(db_url).close()  # migrated already: this test is about the writes
    assert workers.run_at_once(SPAWN, workers.record_builds, (db_url, builds), processes) == [builds] * 4
    with open_store(db_url) as store:
        repo = TestHistoryRepo(store)
        got = {t.name: (t.runs, t.failures, t.flakes) for t in repo.top(workers.MODULE)}
    total = processes * builds
    assert got == {
        "TestStable": (total, 0, 0),
        "TestFails": (total, processes * builds // 5, 0),
        "TestFlaky": (total, 0, processes * builds // 10),
    }


@pytest.mark.parametrize("processes", [6])
def test_opening_a_new_database_at_once_migrates_once(db_url: str, processes: int) -> None:
    results = workers.run_at_once(SPAWN, workers.open_at_once, (db_url,), processes)
    assert all(after == head_revision() for _, after in results)
    befores = sorted(results, key=lambda r: r[0] or "")
    assert [before for before, _ in befores].count(None) == 1, results  # exactly one process migrated
    with open_store(db_url) as store:
        assert store.current_revision() == head_revision()


def test_one_store_shared_by_threads(store: Store) -> None:
    repo = TestHistoryRepo(store)

    def builds(thread: int) -> None:
        for build in range(25):
            repo.record(workers.MODULE, workers.outcomes(build))
            repo.top(workers.MODULE)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(builds, range(4)))
    stable = repo.get(workers.MODULE, workers.PACKAGE, "TestStable")
    assert stable is not None and stable.runs == 100
