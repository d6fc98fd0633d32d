"""The plain records the build repository takes and returns (never rows bound to a session)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gocaas.errors import GocaasError
from gocaas.store.models import BuildRow

__all__ = [
    "ACTIVE",
    "ArtifactRecord",
    "BuildRecord",
    "BuildState",
    "LogChunk",
    "NewBuild",
    "Outcome",
    "QueueFull",
    "QueuedBuild",
    "StageRecordRow",
    "TestRecord",
]


class BuildState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELLED)


ACTIVE = (BuildState.QUEUED.value, BuildState.RUNNING.value)


class QueueFull(GocaasError):
    """Admission control said no: the tenant's queue (`scope="tenant"`) or the whole queue is full."""

    default_kind = "queue_full"

    def __init__(self, message: str, *, scope: str) -> None:
        super().__init__(message)
        self.scope = scope


@dataclass(frozen=True, slots=True)
class NewBuild:
    id: str
    tenant_id: int
    spec: str
    fingerprint: str
    priority: int
    idempotency_key: str | None = None
    upload: str | None = None
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class BuildRecord:
    id: str
    tenant_id: int
    status: BuildState
    priority: int
    spec: str
    fingerprint: str
    idempotency_key: str | None
    attempts: int
    created_at: datetime
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    cancel_requested: bool
    stage: str | None
    exit_code: int | None
    failure_class: str | None
    failure_kind: str | None
    message: str | None
    report: str | None
    upload: str | None
    timeout_s: float | None

    @classmethod
    def of(cls, row: BuildRow) -> BuildRecord:
        return cls(
            row.id,
            row.tenant_id,
            BuildState(row.status),
            row.priority,
            row.spec,
            row.fingerprint,
            row.idempotency_key,
            row.attempts,
            row.created_at,
            row.queued_at,
            row.started_at,
            row.finished_at,
            row.worker,
            row.cancel_requested,
            row.stage,
            row.exit_code,
            row.failure_class,
            row.failure_kind,
            row.message,
            row.report,
            row.upload,
            row.timeout_s,
        )


@dataclass(frozen=True, slots=True)
class QueuedBuild:
    """What the scheduler needs to order the queue."""

    id: str
    tenant_id: int
    priority: int
    queued_at: datetime


@dataclass(frozen=True, slots=True)
class StageRecordRow:
    position: int
    name: str
    status: str
    duration_s: float | None = None
    skip_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    name: str
    kind: str
    goos: str | None
    goarch: str | None
    sha256: str
    size: int
    path: str


@dataclass(frozen=True, slots=True)
class TestRecord:
    __test__ = False  # not a pytest class

    package: str
    name: str
    state: str
    duration_s: float
    attempts: int


@dataclass(frozen=True, slots=True)
class LogChunk:
    id: int
    text: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a build ended, as the executor records it."""

    status: BuildState
    exit_code: int | None = None
    failure_class: str | None = None
    failure_kind: str | None = None
    message: str | None = None
    report: str | None = None
    artifacts: Sequence[ArtifactRecord] = ()
    tests: Sequence[TestRecord] = ()
