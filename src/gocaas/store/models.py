"""The tables, as typed SQLAlchemy declarative models. Every change here needs a migration in migrations/.

Rows are for the repositories; callers get plain values (see history.py), never a model bound to a session.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ApiTokenRow",
    "ArtifactRow",
    "Base",
    "BuildLogRow",
    "BuildRow",
    "BuildStageRow",
    "BuildTestRow",
    "TenantRow",
    "TestHistoryRow",
    "UTCDateTime",
]

# Stable constraint names, so migrations can refer to them on every database (and SQLite batch mode works).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware, on SQLite (which has no time zones) too.

    Naive datetimes are refused: a time without a zone is a bug waiting for a daylight saving change.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware times only")
        value = value.astimezone(UTC)
        # SQLite stores the text of the value: keep it naive UTC so that stored values compare in time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TestHistoryRow(Base):
    """One Go test's record across builds of a module: how often it ran, failed and was flaky."""

    __test__: ClassVar[bool] = False  # not a pytest test class
    __tablename__ = "test_history"
    __table_args__ = (UniqueConstraint("module", "package", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    module: Mapped[str] = mapped_column(String)
    package: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    runs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    flakes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TenantRow(Base):
    """A team sharing the service: its builds, tokens and build cache namespace are its own."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiTokenRow(Base):
    """A bearer token, stored as its SHA-256 only: a leaked database does not leak usable tokens."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(128), default="", server_default="")
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BuildRow(Base):
    """One build request and its life: queued → running → succeeded | failed | cancelled."""

    __tablename__ = "builds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_builds_status_priority", "status", "priority"),
        Index("ix_builds_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    spec: Mapped[str] = mapped_column(Text, doc="The BuildSpec as JSON.")
    fingerprint: Mapped[str] = mapped_column(String(64), index=True, doc="Identical requests share it.")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    stage: Mapped[str | None] = mapped_column(String(32), doc="The stage running now.")
    exit_code: Mapped[int | None] = mapped_column(Integer)
    failure_class: Mapped[str | None] = mapped_column(String(16))
    failure_kind: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    report: Mapped[str | None] = mapped_column(Text, doc="The BuildReport as JSON, once finished.")
    upload: Mapped[str | None] = mapped_column(String(512), doc="The uploaded archive's path, if any.")
    timeout_s: Mapped[float | None] = mapped_column(Float, doc="This build's timeout; None: the server's.")


class BuildStageRow(Base):
    __tablename__ = "build_stages"
    __table_args__ = (UniqueConstraint("build_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), doc="running | ok | failed | skipped")
    duration_s: Mapped[float | None] = mapped_column(Float)
    skip_reason: Mapped[str | None] = mapped_column(Text)


class BuildLogRow(Base):
    """A chunk of a build's log (lines flushed together). The id orders chunks and resumes a live stream."""

    __tablename__ = "build_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)


class ArtifactRow(Base):
    __tablename__ = "build_artifacts"
    __table_args__ = (UniqueConstraint("build_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    goos: Mapped[str | None] = mapped_column(String(32))
    goarch: Mapped[str | None] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1024))


class BuildTestRow(Base):
    """One Go test's outcome in one build (the report's per-test results, queryable)."""

    __tablename__ = "build_tests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"), index=True)
    package: Mapped[str] = mapped_column(String(512))
    name: Mapped[str] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(16))
    duration_s: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer)
