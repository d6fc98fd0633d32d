"""The build repository's contract (the builds table is the service's queue), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event

from gocaas.store import Store
from gocaas.store.builds import (
    ArtifactRecord,
    BuildRecord,
    BuildRepo,
    BuildState,
    NewBuild,
    Outcome,
    QueueFull,
    StageRecordRow,
    TestRecord,
)
from gocaas.store.tenants import TenantRepo

ROOMY = {"max_queued": 1000, "max_queued_per_tenant": 1000}


def tenant(store: Store, name: str) -> int:
    return TenantRepo(store).create_token(name).principal.tenant_id


def new(
    build_id: str,
    tenant_id: int,
    *,
    fingerprint: str | None = None,
    key: str | None = None,
    priority: int = 5,
    upload: str | None = None,
) -> NewBuild:
    return NewBuild(
        id=build_id,
        tenant_id=tenant_id,
        spec=f'{{"build": "{build_id}"}}',
        fingerprint=fingerprint or f"fp-{build_id}",
        priority=priority,
        idempotency_key=key,
        upload=upload,
    )


def submit(repo: BuildRepo, build: NewBuild, **bounds: int) -> tuple[BuildRecord, bool]:
    return repo.submit(build, **(ROOMY | bounds))


def queued_one(repo: BuildRepo, build_id: str, tenant_id: int, **kwargs: Any) -> BuildRecord:
    record, created = submit(repo, new(build_id, tenant_id, **kwargs))
    assert created, build_id
    return record


def running_one(repo: BuildRepo, build_id: str, tenant_id: int, **kwargs: Any) -> BuildRecord:
    queued_one(repo, build_id, tenant_id, **kwargs)
    record = repo.claim(build_id, "w1")
    assert record is not None
    return record


def total_builds(repo: BuildRepo) -> int:
    return sum(repo.count_by_status().values())


@pytest.fixture
def repo(store: Store) -> BuildRepo:
    return BuildRepo(store)


@pytest.fixture
def acme(store: Store) -> int:
    return tenant(store, "acme")


@pytest.fixture
def other(store: Store) -> int:
    return tenant(store, "other")


# --- submit and dedupe ---------------------------------------------------------------------------------


def test_submit_queues_a_new_build(repo: BuildRepo, acme: int) -> None:
    record, created = submit(repo, new("b001", acme, key="k1", priority=7, upload="/up/b001.tar.gz"))
    assert created
    assert (record.id, record.tenant_id, record.status, record.priority) == (
        "b001",
        acme,
        BuildState.QUEUED,
        7,
    )
    assert (record.attempts, record.cancel_requested, record.idempotency_key) == (0, False, "k1")
    assert record.upload == "/up/b001.tar.gz" and record.spec == '{"build": "b001"}'
    assert record.started_at is None and record.finished_at is None and record.worker is None
    assert record.created_at.tzinfo is not None and record.queued_at == record.created_at
    assert repo.get("b001") == record


def test_idempotency_key_dedupes_in_any_state(repo: BuildRepo, acme: int) -> None:
    first = queued_one(repo, "b001", acme, key="same", fingerprint="fp-a")
    again, created = submit(repo, new("b002", acme, key="same", fingerprint="fp-other"))
    assert not created and again.id == "b001"

    assert repo.claim("b001", "w1") is not None
    again, created = submit(repo, new("b003", acme, key="same", fingerprint="fp-other"))
    assert not created and (again.id, again.status) == ("b001", BuildState.RUNNING)

    assert repo.finish("b001", Outcome(BuildState.FAILED, exit_code=1))
    again, created = submit(repo, new("b004", acme, key="same", fingerprint="fp-other"))
    assert not created and (again.id, again.status) == ("b001", BuildState.FAILED)

    assert total_builds(repo) == 1
    assert repo.get("b002") is None and repo.get("b004") is None
    assert repo.get("b001") == again and first.id == again.id


def test_idempotency_key_dedupes_cancelled_builds_too(repo: BuildRepo, acme: int) -> None:
    queued_one(repo, "b001", acme, key="k")
    assert repo.request_cancel("b001") is not None
    again, created = submit(repo, new("b002", acme, key="k"))
    assert not created and (again.id, again.status) == ("b001", BuildState.CANCELLED)


def test_fingerprint_dedupes_only_while_queued_or_running(repo: BuildRepo, acme: int) -> None:
    queued_one(repo, "b001", acme, fingerprint="fp")
    again, created = submit(repo, new("b002", acme, fingerprint="fp"))
    assert not created and again.id == "b001"

    assert repo.claim("b001", "w1") is not None
    again, created = submit(repo, new("b003", acme, fingerprint="fp"))
    assert not created and again.id == "b001"

    assert repo.finish("b001", Outcome(BuildState.SUCCEEDED, exit_code=0))
    fresh, created = submit(repo, new("b004", acme, fingerprint="fp"))
    assert created and fresh.id == "b004" and fresh.status is BuildState.QUEUED
    # ... and the new one is what identical requests now join.
    again, created = submit(repo, new("b005", acme, fingerprint="fp"))
    assert not created and again.id == "b004"
    assert total_builds(repo) == 2


def test_a_cancelled_identical_build_does_not_dedupe(repo: BuildRepo, acme: int) -> None:
    queued_one(repo, "b001", acme, fingerprint="fp")
    assert repo.request_cancel("b001") is not None
    fresh, created = submit(repo, new("b002", acme, fingerprint="fp"))
    assert created and fresh.id == "b002"


def test_new_idempotency_key_with_a_live_fingerprint_joins_the_live_build(repo: BuildRepo, acme: int) -> None:
    queued_one(repo, "b001", acme, fingerprint="fp", key="k1")
    again, created = submit(repo, new("b002", acme, fingerprint="fp", key="k2"))
    assert not created and again.id == "b001"


def test_dedupe_is_per_tenant(repo: BuildRepo, acme: int, other: int) -> None:
    mine = queued_one(repo, "b001", acme, key="k", fingerprint="fp")
    theirs, created = submit(repo, new("b002", other, key="k", fingerprint="fp"))
    assert created and theirs.id == "b002" and theirs.tenant_id == other
    assert mine.id != theirs.id
    # Each tenant's key still finds its own build.
    assert submit(repo, new("b003", acme, key="k"))[0].id == "b001"
    assert submit(repo, new("b004", other, key="k"))[0].id == "b002"
    assert total_builds(repo) == 2


# --- admission -----------------------------------------------------------------------------------------


def test_per_tenant_bound(repo: BuildRepo, acme: int, other: int) -> None:
    bounds = {"max_queued": 100, "max_queued_per_tenant": 2}
    submit(repo, new("b001", acme), **bounds)
    submit(repo, new("b002", acme), **bounds)
    with pytest.raises(QueueFull) as caught:
        submit(repo, new("b003", acme), **bounds)
    assert caught.value.scope == "tenant" and caught.value.kind == "queue_full"
    assert repo.get("b003") is None
    # Another tenant is not affected, and a duplicate of a queued build is no new admission.
    assert submit(repo, new("b004", other), **bounds)[1]
    assert submit(repo, new("b005", acme, fingerprint="fp-b001"), **bounds) == (repo.get("b001"), False)
    # A build that starts running leaves the queue: room for one more.
    assert repo.claim("b001", "w1") is not None
    assert submit(repo, new("b006", acme), **bounds)[1]
    with pytest.raises(QueueFull, match="tenant") as caught:
        submit(repo, new("b007", acme), **bounds)
    assert caught.value.scope == "tenant"


def test_server_bound(repo: BuildRepo, acme: int, other: int, store: Store) -> None:
    third = tenant(store, "third")
    bounds = {"max_queued": 3, "max_queued_per_tenant": 100}
    submit(repo, new("b001", acme), **bounds)
    submit(repo, new("b002", other), **bounds)
    submit(repo, new("b003", acme), **bounds)
    for build_id, tenant_id in (("b004", third), ("b005", acme)):
        with pytest.raises(QueueFull) as caught:
            submit(repo, new(build_id, tenant_id), **bounds)
        assert caught.value.scope == "server"
        assert repo.get(build_id) is None
    assert repo.request_cancel("b002") is not None
    assert submit(repo, new("b006", third), **bounds)[1]


# --- reading -------------------------------------------------------------------------------------------


def test_get_and_list_never_show_another_tenants_build(repo: BuildRepo, acme: int, other: int) -> None:
    queued_one(repo, "b001", acme)
    queued_one(repo, "b002", other)
    running_one(repo, "b003", other)
    assert repo.get("b001", tenant_id=acme) is not None
    assert repo.get("b001", tenant_id=other) is None
    assert repo.get("b002", tenant_id=acme) is None
    assert repo.get("nope", tenant_id=acme) is None and repo.get("nope") is None
    assert [b.id for b in repo.list(tenant_id=acme)] == ["b001"]
    assert [b.id for b in repo.list(tenant_id=other)] == ["b003", "b002"]
    assert [b.id for b in repo.list(tenant_id=acme, statuses=[BuildState.RUNNING])] == []
    assert [b.id for b in repo.list(tenant_id=acme, before="b999")] == ["b001"]
    assert [b.id for b in repo.list(tenant_id=None)] == ["b003", "b002", "b001"]  # the admin's view


def walk(repo: BuildRepo, *, page: int, **filters: Any) -> list[str]:
    seen: list[str] = []
    before = None
    for _ in range(1000):
        got = repo.list(before=before, limit=page, **filters)
        assert len(got) <= page
        seen += [b.id for b in got]
        if len(got) < page:
            return seen
        before = got[-1].id
    raise AssertionError("pagination does not end")


def test_list_pages_newest_first_without_gaps_or_duplicates(repo: BuildRepo, acme: int, other: int) -> None:
    mine = []
    for n in range(23):
        build_id = f"2026{n:04d}"
        queued_one(repo, build_id, acme if n % 4 else other)
        if n % 4:
            mine.append(build_id)
    for page in (1, 5, 11, len(mine), 50):
        assert walk(repo, page=page, tenant_id=acme) == sorted(mine, reverse=True), page
    first = repo.list(tenant_id=acme, limit=3)
    assert [b.id for b in first] == sorted(mine, reverse=True)[:3]
    assert repo.list(tenant_id=acme, before=min(mine)) == []


def test_list_filters_by_status(repo: BuildRepo, acme: int) -> None:
    for n in range(12):
        queued_one(repo, f"b{n:03d}", acme)
    running = ["b001", "b004", "b007", "b010"]
    for build_id in running:
        assert repo.claim(build_id, "w") is not None
    succeeded = ["b004", "b010"]
    for build_id in succeeded:
        assert repo.finish(build_id, Outcome(BuildState.SUCCEEDED))
    cancelled = ["b002"]
    assert repo.request_cancel("b002") is not None
    still_running = ["b007", "b001"]
    queued = sorted({f"b{n:03d}" for n in range(12)} - set(running) - set(cancelled), reverse=True)

    def ids(*statuses: BuildState, page: int = 2) -> list[str]:
        return walk(repo, page=page, tenant_id=acme, statuses=statuses)

    assert ids(BuildState.RUNNING) == still_running
    assert ids(BuildState.SUCCEEDED) == ["b010", "b004"]
    assert ids(BuildState.QUEUED, page=3) == queued
    assert ids(BuildState.CANCELLED, BuildState.SUCCEEDED) == ["b010", "b004", "b002"]
    assert ids(BuildState.FAILED) == []
    assert [b.id for b in repo.running()] == still_running
    assert {b.id for b in repo.queued()} == set(queued)


def test_queued_is_what_the_scheduler_needs(repo: BuildRepo, acme: int) -> None:
    a = queued_one(repo, "b001", acme, priority=2)
    queued_one(repo, "b002", acme, priority=9)
    running_one(repo, "b003", acme)
    got = {q.id: q for q in repo.queued()}
    assert set(got) == {"b001", "b002"}
    assert (got["b001"].tenant_id, got["b001"].priority, got["b001"].queued_at) == (acme, 2, a.queued_at)
    assert got["b002"].priority == 9


def test_count_by_status(repo: BuildRepo, acme: int, other: int) -> None:
    assert repo.count_by_status() == {}
    for n in range(6):
        queued_one(repo, f"b{n:03d}", acme if n % 2 else other)
    assert repo.claim("b000", "w") is not None
    assert repo.claim("b001", "w") is not None
    assert repo.finish("b001", Outcome(BuildState.FAILED))
    assert repo.request_cancel("b002") is not None
    assert repo.count_by_status() == {"queued": 3, "running": 1, "failed": 1, "cancelled": 1}


# --- the executor's writes -----------------------------------------------------------------------------


def test_claim_is_exclusive_and_counts_attempts(repo: BuildRepo, acme: int) -> None:
    queued_one(repo, "b001", acme)
    first = repo.claim("b001", "w1")
    assert first is not None
    assert (first.status, first.attempts, first.worker) == (BuildState.RUNNING, 1, "w1")
    assert first.started_at is not None and first.stage is None
    assert repo.claim("b001", "w2") is None
    after = repo.get("b001")
    assert after is not None and (after.worker, after.attempts) == ("w1", 1)
    assert repo.claim("nope", "w1") is None


def test_claim_refuses_finished_and_cancelled_builds(repo: BuildRepo, acme: int) -> None:
    running_one(repo, "b001", acme)
    assert repo.finish("b001", Outcome(BuildState.SUCCEEDED))
    assert repo.claim("b001", "w2") is None
    queued_one(repo, "b002", acme)
    assert repo.request_cancel("b002") is not None
    assert repo.claim("b002", "w2") is None
    cancelled = repo.get("b002")
    assert cancelled is not None and (cancelled.status, cancelled.attempts) == (BuildState.CANCELLED, 0)


def at_once(threads: int, action: Callable[[int], Any]) -> list[Any]:
    """`action(i)` from `threads` threads released together."""
    barrier = threading.Barrier(threads)

    def run(i: int) -> Any:
        barrier.wait(timeout=30)
        return action(i)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(run, range(threads)))


def test_claim_from_threads_at_once_has_one_winner(repo: BuildRepo, acme: int) -> None:
    for round_ in range(5):
        build_id = f"b{round_:03d}"
        queued_one(repo, build_id, acme)
        results = at_once(6, lambda i, build_id=build_id: repo.claim(build_id, f"w{i}"))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, results
        record = repo.get(build_id)
        assert record is not None
        assert (record.status, record.attempts, record.worker) == (BuildState.RUNNING, 1, winners[0].worker)


def test_requeue_and_reclaim(repo: BuildRepo, acme: int) -> None:
    queued_one(repo, "b001", acme)
    assert not repo.requeue("b001", "not running")
    assert repo.claim("b001", "w1") is not None
    repo.set_stage("b001", StageRecordRow(0, "source", "ok", 0.5))
    repo.set_stage("b001", StageRecordRow(1, "modules", "running"))
    assert repo.requeue("b001", "worker died; re-queued")
    record = repo.get("b001")
    assert record is not None
    assert (record.status, record.worker, record.stage) == (BuildState.QUEUED, None, None)
    assert (record.attempts, record.message) == (1, "worker died; re-queued")
    assert {q.id for q in repo.queued()} == {"b001"}
    assert not repo.requeue("b001", "again")  # queued now

    second = repo.claim("b001", "w2")
    assert second is not None and (second.attempts, second.worker) == (2, "w2")
    assert repo.stages("b001") == []  # the previous attempt's stages are gone
    repo.set_stage("b001", StageRecordRow(0, "source", "running"))
    assert repo.stages("b001") == [StageRecordRow(0, "source", "running")]

    assert repo.finish("b001", Outcome(BuildState.SUCCEEDED))
    assert not repo.requeue("b001", "finished")
    done = repo.get("b001")
    assert done is not None and done.status is BuildState.SUCCEEDED


def test_set_stage_upserts_by_position(repo: BuildRepo, acme: int, other: int) -> None:
    running_one(repo, "b001", acme)
    running_one(repo, "b002", other)
    repo.set_stage("b001", StageRecordRow(0, "source", "running"))
    record = repo.get("b001")
    assert record is not None and record.stage == "source"

    repo.set_stage("b001", StageRecordRow(0, "source", "ok", 1.25))
    repo.set_stage("b001", StageRecordRow(2, "build", "skipped", skip_reason="reused"))
    repo.set_stage("b001", StageRecordRow(1, "modules", "running"))
    repo.set_stage("b002", StageRecordRow(0, "source", "failed", 0.1))
    assert repo.stages("b001") == [
        StageRecordRow(0, "source", "ok", 1.25),
        StageRecordRow(1, "modules", "running"),
        StageRecordRow(2, "build", "skipped", skip_reason="reused"),
    ]
    record = repo.get("b001")
    assert record is not None and record.stage == "modules"

    repo.set_stage("b001", StageRecordRow(1, "modules", "failed", 2.0))  # not running: the stage stays
    record = repo.get("b001")
    assert record is not None and record.stage == "modules"
    assert repo.stages("b001")[1] == StageRecordRow(1, "modules", "failed", 2.0)
    assert len(repo.stages("b001")) == 3
    assert repo.stages("b002") == [StageRecordRow(0, "source", "failed", 0.1)]
    other_record = repo.get("b002")
    assert other_record is not None and other_record.stage is None


def test_log_chunks_are_ordered_and_resumable(repo: BuildRepo, acme: int) -> None:
    running_one(repo, "b001", acme)
    running_one(repo, "b002", acme)
    assert repo.log("b001") == []
    texts = [f"line {n}\n" for n in range(30)]
    for n, text in enumerate(texts):
        repo.append_log("b001", text)
        repo.append_log("b002", f"other {n}\n")
        repo.append_log("b001", "")  # nothing to store
    chunks = repo.log("b001")
    assert [c.text for c in chunks] == texts
    assert [c.id for c in chunks] == sorted({c.id for c in chunks})

    # A reader that resumes after any chunk sees exactly the rest, in order.
    for cut in (0, 1, 17, 29):
        assert [c.text for c in repo.log("b001", after=chunks[cut].id)] == texts[cut + 1 :]
    assert repo.log("b001", after=chunks[-1].id) == []
    # Paging with `limit` and `after` walks the whole log.
    got: list[str] = []
    after = 0
    while page := repo.log("b001", after=after, limit=7):
        got += [c.text for c in page]
        after = page[-1].id
    assert got == texts
    repo.append_log("b001", "late\n")
    assert [c.text for c in repo.log("b001", after=chunks[-1].id)] == ["late\n"]
    assert [c.text for c in repo.log("b002")] == [f"other {n}\n" for n in range(30)]


ARTIFACTS = [
    ArtifactRecord("hello-linux-amd64", "binary", "linux", "amd64", "a" * 64, 1234, "/art/b001/hello-l"),
    ArtifactRecord("hello-darwin-arm64", "binary", "darwin", "arm64", "b" * 64, 2345, "/art/b001/hello-d"),
    ArtifactRecord("report.json", "report", None, None, "c" * 64, 99, "/art/b001/report.json"),
]
TESTS = [
    TestRecord("example.com/m/a", "TestOne", "pass", 0.01, 1),
    TestRecord("example.com/m/a", "TestFlaky", "flaky", 0.5, 3),
    TestRecord("example.com/m/b", "TestTwo/sub", "fail", 1.5, 2),
]


def test_finish_records_the_outcome_once(repo: BuildRepo, acme: int) -> None:
    running_one(repo, "b001", acme)
    repo.set_stage("b001", StageRecordRow(0, "test", "running"))
    outcome = Outcome(
        BuildState.FAILED,
        exit_code=1,
        failure_class="user",
        failure_kind="test_failed",
        message="1 test failed",
        report='{"ok": false}',
        artifacts=ARTIFACTS,
        tests=TESTS,
    )
    assert repo.finish("b001", outcome)
    record = repo.get("b001")
    assert record is not None
    assert (record.status, record.exit_code, record.failure_class, record.failure_kind) == (
        BuildState.FAILED,
        1,
        "user",
        "test_failed",
    )
    assert (record.message, record.report, record.stage) == ("1 test failed", '{"ok": false}', None)
    assert record.finished_at is not None and record.started_at is not None
    assert record.finished_at >= record.started_at
    assert repo.artifacts("b001") == sorted(ARTIFACTS, key=lambda a: a.name)
    assert repo.tests("b001") == TESTS

    second = Outcome(
        BuildState.SUCCEEDED,
        exit_code=0,
        message="again",
        artifacts=[ArtifactRecord("x", "binary", "linux", "arm64", "d" * 64, 1, "/x")],
        tests=[TestRecord("p", "TestX", "pass", 0.0, 1)],
    )
    assert not repo.finish("b001", second)
    assert repo.get("b001") == record
    assert repo.artifacts("b001") == sorted(ARTIFACTS, key=lambda a: a.name)
    assert repo.tests("b001") == TESTS


def test_finish_from_queued_and_not_from_cancelled(repo: BuildRepo, acme: int) -> None:
    queued_one(repo, "b001", acme)  # e.g. refused before it ran
    assert repo.finish("b001", Outcome(BuildState.FAILED, failure_kind="bad_input", message="no"))
    record = repo.get("b001")
    assert record is not None and record.status is BuildState.FAILED and record.message == "no"
    assert repo.claim("b001", "w1") is None

    queued_one(repo, "b002", acme)
    assert repo.request_cancel("b002") is not None
    assert not repo.finish("b002", Outcome(BuildState.SUCCEEDED, artifacts=ARTIFACTS))
    cancelled = repo.get("b002")
    assert cancelled is not None and cancelled.status is BuildState.CANCELLED
    assert repo.artifacts("b002") == []
    assert not repo.finish("nope", Outcome(BuildState.SUCCEEDED))


def test_concurrent_finishes_record_one_outcome(repo: BuildRepo, acme: int) -> None:
    running_one(repo, "b001", acme)

    def finish(i: int) -> bool:
        artifact = ArtifactRecord(f"out-{i}", "binary", "linux", "amd64", "e" * 64, i, f"/o/{i}")
        return repo.finish("b001", Outcome(BuildState.SUCCEEDED, exit_code=i, artifacts=[artifact]))

    results = at_once(5, finish)
    assert results.count(True) == 1, results
    winner = results.index(True)
    record = repo.get("b001")
    assert record is not None and record.exit_code == winner
    assert [a.name for a in repo.artifacts("b001")] == [f"out-{winner}"]


def test_request_cancel(repo: BuildRepo, acme: int) -> None:
    queued_one(repo, "b001", acme)
    cancelled = repo.request_cancel("b001")
    assert cancelled is not None
    assert cancelled.status is BuildState.CANCELLED and cancelled.finished_at is not None
    assert cancelled.message and repo.get("b001") == cancelled
    assert repo.queued() == []

    running_one(repo, "b002", acme)
    running_one(repo, "b003", acme)
    assert repo.cancel_requested(["b002", "b003"]) == set()
    flagged = repo.request_cancel("b002")
    assert flagged is not None
    assert (flagged.status, flagged.cancel_requested, flagged.finished_at) == (BuildState.RUNNING, True, None)
    assert repo.cancel_requested(["b002", "b003", "nope"]) == {"b002"}
    assert repo.cancel_requested([]) == set()
    # The executor decides how a flagged build ends.
    assert repo.finish("b002", Outcome(BuildState.CANCELLED, message="cancelled while running"))

    running_one(repo, "b004", acme)
    assert repo.finish("b004", Outcome(BuildState.SUCCEEDED))
    before = repo.get("b004")
    again = repo.request_cancel("b004")  # finished: stays as it was
    assert again is not None and again.status is BuildState.SUCCEEDED and not again.cancel_requested
    assert repo.get("b004") == before
    assert repo.request_cancel("b001") == cancelled  # twice: nothing more happens
    assert repo.request_cancel("nope") is None


# --- concurrency ---------------------------------------------------------------------------------------


def test_concurrent_submits_with_one_key_make_one_build(repo: BuildRepo, acme: int) -> None:
    for round_ in range(3):

        def submit_once(i: int, r: int = round_) -> tuple[BuildRecord, bool]:
            # Each request would be a build of its own (its own id and fingerprint) but for the key.
            return submit(repo, new(f"r{r}-b{i:03d}", acme, key=f"key-{r}", fingerprint=f"fp-{r}-{i}"))

        results = at_once(8, submit_once)
        assert [created for _, created in results].count(True) == 1, results
        assert len({record.id for record, _ in results}) == 1, results
        assert len(repo.list(tenant_id=acme, limit=100)) == round_ + 1
    assert total_builds(repo) == 3


def test_cancel_racing_a_claim_never_cancels_a_started_build(
    repo: BuildRepo, acme: int, store: Store
) -> None:
    """A cancel that read the build as queued while a worker claimed it must not overwrite "running":
    either the cancel wins (the claim gets None) or the claim does (the build runs, flagged for its
    executor). The claim is started right after request_cancel has read the build."""
    queued_one(repo, "b001", acme)
    claimed: list[BuildRecord | None] = []
    claimer = threading.Thread(target=lambda: claimed.append(repo.claim("b001", "w1")))
    canceller = threading.current_thread()
    fired = threading.Event()

    def after_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if (
            threading.current_thread() is canceller
            and not fired.is_set()
            and statement.lstrip().upper().startswith("SELECT")
            and "FROM builds" in statement
        ):
            fired.set()
            claimer.start()
            claimer.join(timeout=1.0)  # a store that locks the row makes the claim wait: go on after 1 s

    engine = store._engine  # the only way to hook between the read and the write of one transaction
    event.listen(engine, "after_cursor_execute", after_execute)
    try:
        cancelled = repo.request_cancel("b001")
    finally:
        event.remove(engine, "after_cursor_execute", after_execute)
    claimer.join(timeout=60)
    assert fired.is_set() and not claimer.is_alive() and len(claimed) == 1
    record = repo.get("b001")
    assert record is not None and cancelled is not None
    if claimed[0] is None:  # the cancel won
        assert (record.status, record.attempts, cancelled.status) == (
            BuildState.CANCELLED,
            0,
            BuildState.CANCELLED,
        )
    else:  # the claim won: the build runs, and its executor is told to stop it
        assert (record.status, record.attempts) == (BuildState.RUNNING, 1)
        assert record.cancel_requested and repo.cancel_requested(["b001"]) == {"b001"}


def test_expired_builds_are_deleted_with_everything_they_own(store: Store, repo: BuildRepo) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, select

    from gocaas.store.models import ArtifactRow, BuildLogRow, BuildStageRow, BuildTestRow

    t = tenant(store, "acme")
    for build_id in ("old", "recent"):
        running_one(repo, build_id, t)
        repo.record_progress(build_id, [StageRecordRow(0, "source", "ok", 0.1)], f"{build_id} log\n")
        artifact = ArtifactRecord(
            f"{build_id}-bin", "binary", "linux", "amd64", "0" * 64, 1, f"/x/{build_id}"
        )
        test = TestRecord("example.test/m", f"Test{build_id}", "passed", 0.0, 1)
        assert repo.finish(
            build_id, Outcome(BuildState.SUCCEEDED, exit_code=0, artifacts=[artifact], tests=[test])
        )
    running_one(repo, "still-running", t)

    now = datetime.now(UTC)
    assert repo.expired(now - timedelta(hours=1)) == []
    assert set(repo.expired(now + timedelta(seconds=1))) == {"old", "recent"}  # never a running build
    assert repo.delete(["old"]) == 1
    assert repo.get("old") is None and repo.get("recent") is not None
    with store.session(write=False) as session:
        for table in (BuildStageRow, BuildLogRow, ArtifactRow, BuildTestRow):
            owners = session.scalars(select(table.build_id).distinct()).all()
            assert "old" not in owners, table.__tablename__
            assert session.scalar(select(func.count()).select_from(table)) >= 1
    assert repo.delete([]) == 0


def test_known_says_which_ids_have_records(store: Store, repo: BuildRepo) -> None:
    t = tenant(store, "acme")
    queued_one(repo, "a", t)
    queued_one(repo, "b", t)
    assert repo.known(["a", "b", "zzz"]) == {"a", "b"}
    assert repo.known([]) == set()
    assert repo.known([f"id{i}" for i in range(1200)] + ["b"]) == {"b"}  # past one IN list's chunk
