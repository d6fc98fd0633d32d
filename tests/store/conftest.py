"""Store fixtures: `db_url` runs each contract test on a fresh SQLite file and on a fresh PostgreSQL database.

PostgreSQL comes from GOCAAS_TEST_POSTGRES_URL (a superuser URL, e.g. the one `tests/store/postgres.sh start`
prints); without it those variants skip, or fail when GOCAAS_TEST_REQUIRE_ALL=1 (CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.engine import URL

from gocaas.store import Store, open_store
from tests.conftest import skip_or_fail

POSTGRES_ENV = "GOCAAS_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on the test server's maintenance database, for creating databases."""
    raw = os.environ.get(POSTGRES_ENV)
    if not raw:
        skip_or_fail(f"{POSTGRES_ENV} is not set (start one with tests/store/postgres.sh start DIR PORT)")
    url = make_url(raw)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as e:  # set but unusable: a broken setup, never a skip
        engine.dispose()
        pytest.fail(f"{POSTGRES_ENV}={url.render_as_string()} is not usable: {e}")
    yield engine
    engine.dispose()


def fresh_postgres_url(admin: Engine) -> Iterator[str]:
    name = f"gocaas_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url: URL = admin.url.set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (no schema yet) of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/data/gocaas.db"
    else:
        yield from fresh_postgres_url(request.getfixturevalue("postgres_admin"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/data/gocaas.db"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url) as opened:
        yield opened
