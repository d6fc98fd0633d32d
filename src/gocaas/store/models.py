"""The tables, as typed SQLAlchemy declarative models. Every change here needs a migration in migrations/.

Rows are for the repositories; callers get plain values (see history.py), never a model bound to a session.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import DateTime, Dialect, Integer, MetaData, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "TestHistoryRow", "UTCDateTime"]

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
