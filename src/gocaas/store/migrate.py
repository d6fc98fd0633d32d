"""Schema migrations: Alembic, configured in code, with its scripts shipped inside the package.

`upgrade` brings a database to the head revision once, however many processes open it at the same time: on
SQLite they queue on a lock file beside the database and then on the database's own write lock (the whole
upgrade is one `BEGIN IMMEDIATE` transaction); on PostgreSQL on a transaction-scoped advisory lock. The
first one migrates, the others find the head revision already there.

To write the next migration (from a checkout, against a scratch database at head):

    from alembic import command
    from gocaas.store.migrate import alembic_config
    command.revision(alembic_config("sqlite:////tmp/scratch.db"), message="builds", autogenerate=True,
                     rev_id="0002")
"""

from __future__ import annotations

import fcntl
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import Engine, exc, text
from sqlalchemy.engine import URL, Connection

if TYPE_CHECKING:  # Alembic is imported only when a migration may be needed: it costs start-up time
    from alembic.config import Config
    from alembic.script import ScriptDirectory

from gocaas.store.engine import BEGIN_OPTION, StoreUnavailable, describe, parse_url, sqlite_path, translate

__all__ = ["MIGRATIONS_DIR", "Migration", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

# The newest revision in migrations/versions (a test checks it against Alembic's head). A database already
# there is opened without loading Alembic at all.
HEAD_REVISION: Final = "0002"

# pg_advisory_xact_lock key of the store's migrations (any fixed bigint; "gocaas" in ASCII).
_PG_LOCK_KEY: Final = 0x676F63616173


@dataclass(frozen=True, slots=True)
class Migration:
    """What opening the store did to the schema: `before` is None for a database that had none."""

    before: str | None
    after: str

    @property
    def ran(self) -> bool:
        return self.before != self.after


def alembic_config(url: str | URL) -> Config:
    """An Alembic Config for the store's migrations and `url`, for Alembic's `command` functions."""
    from alembic.config import Config

    parsed = parse_url(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    # ConfigParser interpolates "%": a password or a path may contain one.
    config.set_main_option("sqlalchemy.url", parsed.render_as_string(hide_password=False).replace("%", "%%"))
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR))


def head_revision() -> str:
    """The newest schema revision this version of gocaas knows."""
    head = _scripts().get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def _revision_of(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _at_head(engine: Engine) -> bool:
    """The cheap check: one query, no Alembic. Any doubt (no table yet, an error) means "look properly"."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except exc.DBAPIError:
        return False
    return rows == [HEAD_REVISION]


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None: not migrated at all)."""
    try:
        with engine.connect() as connection:
            return _revision_of(connection)
    except exc.DBAPIError as e:
        raise translate(e, engine.url, "reading the schema revision", always=True) from e


def upgrade(engine: Engine) -> Migration:
    """Migrate the database behind `engine` to the head revision, safely against concurrent openers."""
    if _at_head(engine):
        return Migration(HEAD_REVISION, HEAD_REVISION)
    from alembic import command

    url = engine.url
    head = head_revision()
    try:
        with _file_lock(url), engine.connect() as connection:
            connection.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                before = _revision_of(connection)
                if before != head:
                    _check_known(before, url, head)
                    config = alembic_config(url)
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                after = _revision_of(connection)
            assert after is not None
            return Migration(before, after)
    except exc.DBAPIError as e:
        raise translate(e, url, "migrating the schema", always=True) from e


def _check_known(revision: str | None, url: URL, head: str) -> None:
    if revision is None:
        return
    try:
        _scripts().get_revision(revision)
    except Exception as e:  # alembic raises its CommandError/ResolutionError subclasses
        raise StoreUnavailable(
            f"database {describe(url)} is at schema revision {revision!r}, which this gocaas (head {head!r}) "
            "does not know: it was migrated by a newer gocaas",
            kind="database_schema",
        ) from e


@contextmanager
def _file_lock(url: URL) -> Iterator[None]:
    """On a SQLite file, an exclusive lock on `<database>.lock`: migrations wait for each other without the
    busy timeout running out. Other databases lock inside their transaction."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    try:
        handle = lock_path.open("a")
    except OSError as e:
        raise StoreUnavailable(f"database {describe(url)}: cannot open lock file {lock_path}: {e}") from e
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
