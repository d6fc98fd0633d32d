"""A real `gocaas serve` per test module, on loopback, sharing the session's warm caches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from gocaas.settings import Settings
from tests.conftest import settings_env
from tests.store.conftest import fresh_postgres_url, postgres_admin  # noqa: F401
from tests.support.server import ServerProcess, server_home

ServerFactory = Callable[..., ServerProcess]


@pytest.fixture(scope="module")
def make_server(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[ServerFactory]:
    """Start servers with their own data directory: make_server(workers=1, **settings_overrides).
    Every server started is stopped at the end of the module."""
    started: list[ServerProcess] = []

    def make(workers: int = 1, home: Path | None = None, **overrides: Any) -> ServerProcess:
        home = home or server_home(tmp_path_factory.mktemp("server"), settings)
        values = (
            settings.model_dump()
            | {
                "home": home,
                "server_allow_local_git": True,
                "reuse_results": True,
            }
            | overrides
        )
        server = ServerProcess(settings_env(Settings(**values)), home, workers=workers)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(make_server: ServerFactory) -> ServerProcess:
    """One shared server for the module's tests that don't restart or kill it."""
    return make_server()


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database for a server (skips locally without one; CI starts one)."""
    admin: Engine = request.getfixturevalue("postgres_admin")
    yield from fresh_postgres_url(admin)
