"""Alembic's environment for the store, run through gocaas.store.migrate (there is no alembic.ini).

The caller hands over an open connection in `config.attributes["connection"]`, already inside the
transaction (and holding the lock) it migrates in; Alembic then neither begins nor commits. Without one
(an Alembic command run on `alembic_config(url)`), an engine is made from the URL with the store's settings.
Offline mode (`--sql`) renders the SQL for the URL's dialect.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import make_url
from sqlalchemy.engine import Connection

from gocaas.store.engine import create_engine
from gocaas.store.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    # Migrations are frozen in time: they name the column type, not our Python type decorator.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        render_item=render_item,
        compare_type=True,
    )


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    assert url, "alembic_config(url) sets sqlalchemy.url"
    engine = create_engine(make_url(url))
    try:
        with engine.connect() as own:
            configure(own)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
