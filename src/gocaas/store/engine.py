"""Database URLs and engines: parsing and naming a URL, SQLite's connection settings, error translation.

Every engine the store uses (the application's and the migrations') is made by `create_engine` here, so
SQLite always runs in WAL mode with a busy timeout and foreign keys on, and SQLAlchemy (not the sqlite3
driver) decides where transactions begin: a writing transaction starts with `BEGIN IMMEDIATE`, so two
processes writing at once queue on the busy timeout instead of failing with "database is locked".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, event, exc, make_url
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from gocaas.errors import BadInput, InfraError

__all__ = [
    "BEGIN_OPTION",
    "StoreUnavailable",
    "create_engine",
    "default_url",
    "describe",
    "is_sqlite_memory",
    "parse_url",
    "sqlite_path",
    "translate",
]

BUSY_TIMEOUT_MS: Final = 30_000
"""How long a SQLite connection waits for another process's write lock before giving up."""

BEGIN_OPTION: Final = "gocaas_sqlite_begin"
"""Execution option naming SQLite's BEGIN flavour for a connection: "DEFERRED" (read) or "IMMEDIATE"."""

SUPPORTED_DIALECTS: Final = ("sqlite", "postgresql")


class StoreUnavailable(InfraError):
    """The database cannot be reached, opened, locked or migrated: an infrastructure failure."""

    default_kind = "database"


def default_url(home: Path) -> str:
    """The store's default: a SQLite file `gocaas.db` in the data directory."""
    return f"sqlite:///{(home.expanduser().absolute() / 'gocaas.db').as_posix()}"


def parse_url(url: str | URL) -> URL:
    """Parse and check a database URL; a malformed one or an unsupported database is the user's BadInput.

    A plain `postgresql://` URL means psycopg 3 (SQLAlchemy's own default would be psycopg2).
    """
    if isinstance(url, URL):
        parsed = url
    else:
        try:
            parsed = make_url(url)
        except (exc.ArgumentError, ValueError) as e:
            raise BadInput(f"malformed database URL {url!r}: {e}", kind="bad_database_url") from e
    backend = parsed.get_backend_name()
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship with
    if backend not in SUPPORTED_DIALECTS:
        raise BadInput(
            f"unsupported database URL {describe(parsed)}: the store supports "
            f"{' and '.join(SUPPORTED_DIALECTS)} (e.g. sqlite:////path/gocaas.db, "
            "postgresql+psycopg://user@host/db)",
            kind="bad_database_url",
        )
    return parsed


def describe(url: URL) -> str:
    """The URL as it may appear in a message or a log: the password hidden."""
    return url.render_as_string(hide_password=True)


def is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, or None for an in-memory database or another dialect."""
    if url.get_backend_name() != "sqlite" or is_sqlite_memory(url) or url.query.get("uri"):
        return None
    assert url.database is not None
    return Path(url.database)


def create_engine(url: URL) -> Engine:
    """An engine for `url` with the store's connection settings. The caller has checked the URL."""
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True  # a long-lived service outlives server restarts and idle timeouts
    if is_sqlite_memory(url):
        # One shared connection, or every session would see its own empty database.
        kwargs |= {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    try:
        engine = sa_create_engine(url, **kwargs)
    except exc.NoSuchModuleError as e:
        raise BadInput(f"unsupported database URL {describe(url)}: {e}", kind="bad_database_url") from e
    except ImportError as e:
        extra = " (pip install 'gocaas[postgres]')" if url.get_backend_name() == "postgresql" else ""
        raise StoreUnavailable(f"no database driver for {describe(url)}: {e}{extra}") from e
    except exc.ArgumentError as e:
        raise BadInput(f"bad database URL {describe(url)}: {e}", kind="bad_database_url") from e
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, wal=not is_sqlite_memory(url))
    return engine


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # The driver's own (legacy) transaction handling off: SQLAlchemy emits BEGIN below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {'IMMEDIATE' if mode == 'IMMEDIATE' else 'DEFERRED'}")


def translate(error: Exception, url: URL, doing: str, *, always: bool = False) -> Exception:
    """The gocaas error for a database failure while `doing` something with the database at `url`.

    Connection, locking and I/O problems are infrastructure (StoreUnavailable); anything else (a constraint
    violation, a programming error) is returned as it is, for the caller to handle or to surface as a bug,
    unless `always` (opening and migrating, where the store issues every statement itself: a file that is
    not a database, a permission problem).
    """
    if (
        always
        or isinstance(error, exc.OperationalError | exc.InterfaceError)
        or (isinstance(error, exc.DBAPIError) and error.connection_invalidated)
    ):
        detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        return StoreUnavailable(f"database {describe(url)}: {doing} failed: {detail}")
    return error
