"""The schema comes from the migrations shipped in the package, and matches the models."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, make_url, text

from gocaas.store import head_revision, open_store
from gocaas.store.migrate import MIGRATIONS_DIR, alembic_config


def test_fresh_database_is_migrated_to_head(db_url: str) -> None:
    with open_store(db_url) as store:
        assert store.migration.before is None
        assert store.migration.after == head_revision()
        assert store.migration.ran
        assert store.current_revision() == head_revision()
    config = alembic_config(db_url)
    config.stdout = io.StringIO()
    command.current(config)  # what `alembic current` says
    assert config.stdout.getvalue().split() == [head_revision(), "(head)"]


def test_reopening_does_not_migrate_again(db_url: str) -> None:
    open_store(db_url).close()
    with open_store(db_url) as store:
        assert store.migration.before == store.migration.after == head_revision()
        assert not store.migration.ran
    engine = create_engine(db_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            head_revision()
        ]
    engine.dispose()


def test_models_and_migrations_agree(db_url: str) -> None:
    open_store(db_url).close()
    command.check(alembic_config(db_url))  # raises if autogenerate would write a migration


def test_migrations_go_down_and_up_again(db_url: str) -> None:
    open_store(db_url).close()
    config = alembic_config(db_url)
    command.downgrade(config, "base")
    with open_store(db_url) as store:
        assert store.migration.before is None
        assert store.current_revision() == head_revision()


def test_test_history_table(db_url: str) -> None:
    open_store(db_url).close()
    engine = create_engine(db_url)
    inspector = inspect(engine)
    assert {c["name"] for c in inspector.get_columns("test_history")} >= {
        "module",
        "package",
        "name",
        "runs",
        "failures",
        "flakes",
        "last_run_at",
        "last_failure_at",
    }
    uniques = inspector.get_unique_constraints("test_history")
    assert [sorted(u["column_names"]) for u in uniques] == [["module", "name", "package"]]
    engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    names = {p.name for p in MIGRATIONS_DIR.iterdir()} | {
        p.name for p in (MIGRATIONS_DIR / "versions").iterdir()
    }
    assert {"env.py", "script.py.mako", "0001_test_history.py"} <= names


def test_sqlite_runs_in_wal_mode_with_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store, store.session() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    path = Path(make_url(sqlite_url).database or "")
    with sqlite3.connect(path) as raw:  # WAL is a property of the file: a plain connection sees it too
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()


def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a/b/c/gocaas.db"
    open_store(url).close()
    assert (tmp_path / "a/b/c/gocaas.db").is_file()


def test_sqlite_in_memory_works() -> None:
    with open_store("sqlite://") as store:
        assert store.current_revision() == head_revision()
