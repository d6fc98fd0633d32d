"""A database that cannot be used is a clear gocaas error naming it, never a raw driver traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gocaas.errors import BadInput, InfraError
from gocaas.store import Store, StoreUnavailable, TestHistoryRepo, TestOutcome, open_store


@pytest.mark.parametrize("url", ["not a url", "sqlite//missing-colon", "://x", ""])
def test_malformed_url_is_bad_input(url: str) -> None:
    with pytest.raises(BadInput) as caught:
        open_store(url)
    assert repr(url) in caught.value.message
    assert caught.value.kind == "bad_database_url"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "nosuchdb://h/db", "oracle+cx_oracle://h/db"])
def test_unsupported_database_is_bad_input(url: str) -> None:
    with pytest.raises(BadInput, match="unsupported database URL") as caught:
        open_store(url)
    assert url.split("://")[0].split("+")[0] in caught.value.message


def test_sqlite_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    url = f"sqlite:///{tmp_path}/file/sub/gocaas.db"
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url)
    assert isinstance(caught.value, InfraError)
    assert url in caught.value.message and f"{tmp_path}/file/sub" in caught.value.message


def test_sqlite_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "gocaas.db").mkdir()
    url = f"sqlite:///{tmp_path}/gocaas.db"
    with pytest.raises(StoreUnavailable, match="unable to open database file") as caught:
        open_store(url)
    assert url in caught.value.message


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "gocaas.db"
    path.write_bytes(b"this is not a SQLite database, it is just some text that is long enough" * 20)
    with pytest.raises(StoreUnavailable, match="file is not a database") as caught:
        open_store(f"sqlite:///{path}")
    assert str(path) in caught.value.message


def test_unreachable_postgresql_names_the_url_without_its_password() -> None:
    pytest.importorskip("psycopg")
    url = "postgresql+psycopg://gocaas:s3cret@127.0.0.1:1/gocaas?connect_timeout=5"
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url)
    message = caught.value.message
    assert "127.0.0.1:1/gocaas" in message and "gocaas:***@" in message
    assert "s3cret" not in message
    assert caught.value.kind == "database"


def test_plain_postgresql_url_means_psycopg_3() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StoreUnavailable) as caught:
        open_store("postgresql://gocaas@127.0.0.1:1/gocaas")
    assert "psycopg2" not in caught.value.message


def test_database_migrated_by_a_newer_gocaas(sqlite_url: str) -> None:
    open_store(sqlite_url).close()
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreUnavailable, match=r"'9999'.*newer gocaas") as caught:
        open_store(sqlite_url)
    assert caught.value.kind == "database_schema"


def test_closed_store_refuses_sessions(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    store.close()
    store.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        TestHistoryRepo(store).record("m", [TestOutcome("p", "TestA", failed=False)])


def test_session_rolls_back_on_error(store: Store) -> None:
    repo = TestHistoryRepo(store)
    with pytest.raises(KeyError), store.session() as session:
        session.execute(text("DELETE FROM test_history"))
        repo_row = TestOutcome("p", "TestA", failed=False)
        raise KeyError(repo_row)
    repo.record("m", [TestOutcome("p", "TestA", failed=False)])
    with pytest.raises(KeyError), store.session() as session:
        session.execute(text("DELETE FROM test_history"))
        raise KeyError("boom")
    assert repo.get("m", "p", "TestA") is not None
