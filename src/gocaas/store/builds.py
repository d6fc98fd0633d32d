"""Builds as the service keeps them: the queue (the builds table is the queue), their stages, logs, artifacts
and per-test outcomes. Every method is one transaction; callers get plain records, never rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gocaas.store.build_records import (
    ACTIVE,
    ArtifactRecord,
    BuildRecord,
    BuildState,
    LogChunk,
    NewBuild,
    Outcome,
    QueuedBuild,
    QueueFull,
    StageRecordRow,
    TestRecord,
)
from gocaas.store.models import ArtifactRow, BuildLogRow, BuildRow, BuildStageRow, BuildTestRow
from gocaas.store.store import Store

__all__ = [
    "ArtifactRecord",
    "BuildRecord",
    "BuildRepo",
    "BuildState",
    "LogChunk",
    "NewBuild",
    "Outcome",
    "QueueFull",
    "QueuedBuild",
    "StageRecordRow",
    "TestRecord",
]


_SUBMIT_LOCK = 0x6763_7362  # "gcsb": the advisory lock key of admissions on PostgreSQL


def _now() -> datetime:
    return datetime.now(UTC)


class BuildRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    # --- admission -------------------------------------------------------------------------------------
    def submit(
        self, new: NewBuild, *, max_queued: int, max_queued_per_tenant: int
    ) -> tuple[BuildRecord, bool]:
        """Queue `new`, or return the build it duplicates: `(record, created)`.

        A duplicate is the tenant's build with the same idempotency key (any state), or else one with the
        same fingerprint that is still queued or running. Past the queue bounds, QueueFull.
        """
        for _ in range(2):  # a concurrent insert of the same key wins the unique constraint: read it back
            try:
                with self._store.session() as session:
                    if session.get_bind().dialect.name == "postgresql":
                        # Serialize admissions as SQLite's BEGIN IMMEDIATE does: the duplicate check and
                        # the queue bounds must see every committed submit, not a READ COMMITTED snapshot.
                        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SUBMIT_LOCK})
                    existing = self._duplicate(session, new)
                    if existing is not None:
                        return BuildRecord.of(existing), False
                    self._admit(session, new.tenant_id, max_queued, max_queued_per_tenant)
                    now = _now()
                    row = BuildRow(
                        id=new.id,
                        tenant_id=new.tenant_id,
                        status=BuildState.QUEUED.value,
                        priority=new.priority,
                        spec=new.spec,
                        fingerprint=new.fingerprint,
                        idempotency_key=new.idempotency_key,
                        attempts=0,
                        created_at=now,
                        queued_at=now,
                        cancel_requested=False,
                        upload=new.upload,
                        timeout_s=new.timeout_s,
                    )
                    session.add(row)
                    session.flush()
                    return BuildRecord.of(row), True
            except IntegrityError:
                continue
        raise RuntimeError(f"build {new.id}: could not insert it nor find the build it duplicates")

    @staticmethod
    def _duplicate(session: Session, new: NewBuild) -> BuildRow | None:
        mine = select(BuildRow).where(BuildRow.tenant_id == new.tenant_id)
        if new.idempotency_key is not None:
            found = session.scalar(mine.where(BuildRow.idempotency_key == new.idempotency_key))
            if found is not None:
                return found
        return session.scalar(
            mine.where(BuildRow.fingerprint == new.fingerprint, BuildRow.status.in_(ACTIVE)).limit(1)
        )

    @staticmethod
    def _admit(session: Session, tenant_id: int, max_queued: int, max_queued_per_tenant: int) -> None:
        queued = BuildRow.status == BuildState.QUEUED.value
        total = session.scalar(select(func.count()).select_from(BuildRow).where(queued)) or 0
        if total >= max_queued:
            raise QueueFull(f"the build queue is full ({total} builds waiting)", scope="server")
        mine = (
            session.scalar(
                select(func.count()).select_from(BuildRow).where(queued, BuildRow.tenant_id == tenant_id)
            )
            or 0
        )
        if mine >= max_queued_per_tenant:
            raise QueueFull(
                f"your tenant's build queue is full ({mine} builds waiting, at most {max_queued_per_tenant})",
                scope="tenant",
            )

    # --- reading ---------------------------------------------------------------------------------------
    def get(self, build_id: str, *, tenant_id: int | None = None) -> BuildRecord | None:
        """The build, or None if there is none (or it is another tenant's, when `tenant_id` is given)."""
        with self._store.session(write=False) as session:
            row = session.get(BuildRow, build_id)
            if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
                return None
            return BuildRecord.of(row)

    def list(
        self,
        *,
        tenant_id: int | None,
        statuses: Iterable[BuildState] = (),
        before: str | None = None,
        limit: int = 50,
    ) -> list[BuildRecord]:
        """Newest first; `before` (a build id) pages on: ids sort by creation time."""
        query = select(BuildRow).order_by(BuildRow.id.desc()).limit(limit)
        if tenant_id is not None:
            query = query.where(BuildRow.tenant_id == tenant_id)
        wanted = [s.value for s in statuses]
        if wanted:
            query = query.where(BuildRow.status.in_(wanted))
        if before is not None:
            query = query.where(BuildRow.id < before)
        with self._store.session(write=False) as session:
            return [BuildRecord.of(row) for row in session.scalars(query)]

    def queued(self) -> list[QueuedBuild]:
        with self._store.session(write=False) as session:
            rows = session.execute(
                select(BuildRow.id, BuildRow.tenant_id, BuildRow.priority, BuildRow.queued_at).where(
                    BuildRow.status == BuildState.QUEUED.value
                )
            )
            return [QueuedBuild(*row) for row in rows]

    def count_by_status(self) -> dict[str, int]:
        with self._store.session(write=False) as session:
            rows = session.execute(select(BuildRow.status, func.count()).group_by(BuildRow.status))
            return {status: count for status, count in rows}

    def running(self) -> list[BuildRecord]:
        return self.list(tenant_id=None, statuses=(BuildState.RUNNING,), limit=10_000)

    def stages(self, build_id: str) -> list[StageRecordRow]:
        with self._store.session(write=False) as session:
            rows = session.scalars(
                select(BuildStageRow)
                .where(BuildStageRow.build_id == build_id)
                .order_by(BuildStageRow.position)
            )
            return [StageRecordRow(r.position, r.name, r.status, r.duration_s, r.skip_reason) for r in rows]

    def artifacts(self, build_id: str) -> list[ArtifactRecord]:
        with self._store.session(write=False) as session:
            rows = session.scalars(
                select(ArtifactRow).where(ArtifactRow.build_id == build_id).order_by(ArtifactRow.name)
            )
            return [ArtifactRecord(r.name, r.kind, r.goos, r.goarch, r.sha256, r.size, r.path) for r in rows]

    def tests(self, build_id: str) -> list[TestRecord]:
        with self._store.session(write=False) as session:
            rows = session.scalars(
                select(BuildTestRow).where(BuildTestRow.build_id == build_id).order_by(BuildTestRow.id)
            )
            return [TestRecord(r.package, r.name, r.state, r.duration_s, r.attempts) for r in rows]

    def log(self, build_id: str, *, after: int = 0, limit: int = 1000) -> list[LogChunk]:
        with self._store.session(write=False) as session:
            rows = session.execute(
                select(BuildLogRow.id, BuildLogRow.text)
                .where(BuildLogRow.build_id == build_id, BuildLogRow.id > after)
                .order_by(BuildLogRow.id)
                .limit(limit)
            )
            return [LogChunk(*row) for row in rows]

    # --- retention -------------------------------------------------------------------------------------
    def expired(self, before: datetime, *, limit: int = 500) -> list[str]:
        """Finished builds that finished before `before`, oldest first."""
        finished = [s.value for s in BuildState if s.finished]
        with self._store.session(write=False) as session:
            return list(
                session.scalars(
                    select(BuildRow.id)
                    .where(BuildRow.status.in_(finished), BuildRow.finished_at < before)
                    .order_by(BuildRow.finished_at)
                    .limit(limit)
                )
            )

    def known(self, build_ids: Sequence[str]) -> set[str]:
        """Which of these build ids the database has a record of."""
        found: set[str] = set()
        with self._store.session(write=False) as session:
            for start in range(0, len(build_ids), 500):
                chunk = build_ids[start : start + 500]
                found.update(session.scalars(select(BuildRow.id).where(BuildRow.id.in_(chunk))))
        return found

    def delete(self, build_ids: Sequence[str]) -> int:
        """Forget builds: their stages, log, artifacts and test rows go with them (ON DELETE CASCADE)."""
        if not build_ids:
            return 0
        with self._store.session() as session:
            return session.execute(delete(BuildRow).where(BuildRow.id.in_(build_ids))).rowcount or 0

    # --- the executor's writes -------------------------------------------------------------------------
    def claim(self, build_id: str, worker: str) -> BuildRecord | None:
        """Mark a queued build running on `worker`; None if someone else took it (or it was cancelled)."""
        with self._store.session() as session:
            done = session.execute(
                update(BuildRow)
                .where(BuildRow.id == build_id, BuildRow.status == BuildState.QUEUED.value)
                .values(
                    status=BuildState.RUNNING.value,
                    attempts=BuildRow.attempts + 1,
                    started_at=_now(),
                    worker=worker,
                    stage=None,
                )
            )
            if done.rowcount != 1:
                return None
            session.execute(delete(BuildStageRow).where(BuildStageRow.build_id == build_id))
            row = session.get(BuildRow, build_id)
            assert row is not None
            return BuildRecord.of(row)

    def record_progress(self, build_id: str, stages: Sequence[StageRecordRow], log_text: str) -> None:
        """What a worker reported since its last report, in one transaction: stage changes, a log chunk."""
        with self._store.session() as session:
            for stage in stages:
                self._set_stage(session, build_id, stage)
            if log_text:
                session.add(BuildLogRow(build_id=build_id, text=log_text))

    def set_stage(self, build_id: str, stage: StageRecordRow) -> None:
        with self._store.session() as session:
            self._set_stage(session, build_id, stage)

    @staticmethod
    def _set_stage(session: Session, build_id: str, stage: StageRecordRow) -> None:
        row = session.scalar(
            select(BuildStageRow).where(
                BuildStageRow.build_id == build_id, BuildStageRow.position == stage.position
            )
        )
        if row is None:
            row = BuildStageRow(build_id=build_id, position=stage.position)
            session.add(row)
        row.name, row.status = stage.name, stage.status
        row.duration_s, row.skip_reason = stage.duration_s, stage.skip_reason
        if stage.status == "running":
            session.execute(update(BuildRow).where(BuildRow.id == build_id).values(stage=stage.name))

    def append_log(self, build_id: str, text: str) -> None:
        if text:
            with self._store.session() as session:
                session.add(BuildLogRow(build_id=build_id, text=text))

    def finish(self, build_id: str, outcome: Outcome) -> bool:
        """Record how a running build ended; False if it was not running (already finished elsewhere)."""
        with self._store.session() as session:
            done = session.execute(
                update(BuildRow)
                .where(BuildRow.id == build_id, BuildRow.status.in_(ACTIVE))
                .values(
                    status=outcome.status.value,
                    finished_at=_now(),
                    stage=None,
                    exit_code=outcome.exit_code,
                    failure_class=outcome.failure_class,
                    failure_kind=outcome.failure_kind,
                    message=outcome.message,
                    report=outcome.report,
                )
            )
            if done.rowcount != 1:
                return False
            session.add_all(
                ArtifactRow(build_id=build_id, **{f: getattr(a, f) for f in ArtifactRecord.__slots__})
                for a in outcome.artifacts
            )
            session.add_all(
                BuildTestRow(build_id=build_id, **{f: getattr(t, f) for f in TestRecord.__slots__})
                for t in outcome.tests
            )
            return True

    def requeue(self, build_id: str, note: str) -> bool:
        """A running build goes back to the queue (its worker died); its attempt count stays."""
        with self._store.session() as session:
            done = session.execute(
                update(BuildRow)
                .where(BuildRow.id == build_id, BuildRow.status == BuildState.RUNNING.value)
                .values(status=BuildState.QUEUED.value, worker=None, stage=None, message=note)
            )
            return done.rowcount == 1

    def request_cancel(self, build_id: str) -> BuildRecord | None:
        """Cancel a queued build now; flag a running one for its executor. Finished builds stay."""
        with self._store.session() as session:
            # Locked: a claim committing between this read and the write below would otherwise be overwritten
            # (a running build marked cancelled). SQLite has no FOR UPDATE; its BEGIN IMMEDIATE serializes.
            row = session.get(BuildRow, build_id, with_for_update=True)
            if row is None:
                return None
            if row.status == BuildState.QUEUED.value:
                row.status = BuildState.CANCELLED.value
                row.finished_at = _now()
                row.message = "cancelled while queued"
            elif row.status == BuildState.RUNNING.value:
                row.cancel_requested = True
            session.flush()
            return BuildRecord.of(row)

    def cancel_requested(self, build_ids: Sequence[str]) -> set[str]:
        if not build_ids:
            return set()
        with self._store.session(write=False) as session:
            return set(
                session.scalars(
                    select(BuildRow.id).where(BuildRow.id.in_(build_ids), BuildRow.cancel_requested)
                )
            )
