"""The Store: one engine, migrated on open, handing out sessions that are one transaction each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from sqlalchemy import Engine, exc
from sqlalchemy.orm import Session, sessionmaker

from gocaas.store.engine import (
    BEGIN_OPTION,
    StoreUnavailable,
    create_engine,
    describe,
    parse_url,
    sqlite_path,
    translate,
)
from gocaas.store.migrate import Migration, current_revision, upgrade

__all__ = ["Store", "open_store"]


def open_store(url: str) -> Store:
    """Open the database at `url` and migrate it to the head revision.

    `url` is a SQLAlchemy URL: `sqlite:////abs/path/gocaas.db` (the parent directory is created) or
    `postgresql+psycopg://user:password@host:port/db` (a plain `postgresql://` means psycopg 3 too).
    Safe to call from several processes at once. A malformed or unsupported URL is BadInput; a database that
    cannot be created, reached or migrated is StoreUnavailable (an InfraError); both name the URL.
    """
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreUnavailable(
                f"database {describe(parsed)}: cannot create its directory {path.parent}: {e}"
            ) from e
    engine = create_engine(parsed)
    try:
        migration = upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, migration)


class Store:
    """The database: sessions for repositories, the schema revision for diagnostics.

    Thread-safe (an engine with a connection pool); not to be shared across fork, open one per process.
    """

    def __init__(self, engine: Engine, migration: Migration) -> None:
        self._engine = engine
        self.migration = migration
        """What opening did to the schema (`migration.ran` is true in the process that migrated)."""
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        # On SQLite a writing transaction takes the write lock up front (BEGIN IMMEDIATE), waiting for it on
        # the busy timeout; one that only reads must not block writers. Other databases ignore the option.
        self._writing = sessionmaker(
            bind=engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}), expire_on_commit=False
        )
        self._closed = False

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return describe(self._engine.url)

    @property
    def dialect(self) -> str:
        """The database kind: "sqlite" or "postgresql"."""
        return self._engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises.

        `write=False` promises the block only reads: on SQLite it then takes no write lock, and a write in it
        may fail with "database is locked" under contention. Connection and locking failures come out as
        StoreUnavailable; constraint violations as SQLAlchemy's IntegrityError, for the repository to handle.
        """
        if self._closed:
            raise RuntimeError(f"store {self.url} is closed")
        factory = self._writing if write else self._sessions
        try:
            with factory.begin() as session:
                yield session
        except exc.DBAPIError as e:
            raise translate(e, self._engine.url, "a transaction") from e

    def current_revision(self) -> str | None:
        """The schema revision the database is at, read from it now (diagnostics)."""
        return current_revision(self._engine)

    def close(self) -> None:
        """Close the pooled connections. Sessions cannot be opened afterwards. Idempotent."""
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"
