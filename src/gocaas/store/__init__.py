"""The persistent store: SQLAlchemy models, Alembic migrations (shipped in the package) and repositories.

    store = open_store(default_url(settings.home))   # or a postgresql+psycopg:// URL
    TestHistoryRepo(store).record("example.com/m", [TestOutcome("example.com/m/x", "TestX", failed=False)])
    store.close()

`open_store` migrates the database to the head revision (safe from many processes at once). SQLite runs in
WAL mode with a busy timeout and foreign keys on. A repository method is one transaction; errors reaching
the database come out as `StoreUnavailable` (an InfraError) or BadInput for a bad URL. No business rules
live here: repositories store and query what they are given.
"""

from __future__ import annotations

from gocaas.store.engine import StoreUnavailable, default_url
from gocaas.store.history import TestHistory, TestHistoryRepo, TestOutcome
from gocaas.store.migrate import Migration, head_revision
from gocaas.store.store import Store, open_store

__all__ = [
    "Migration",
    "Store",
    "StoreUnavailable",
    "TestHistory",
    "TestHistoryRepo",
    "TestOutcome",
    "default_url",
    "head_revision",
    "open_store",
]
