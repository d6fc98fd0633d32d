"""A repository whose every method is retried while the database is unavailable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from gocaas.store.builds import BuildRepo
from gocaas.store.engine import StoreUnavailable

__all__ = ["STORE_PATIENCE", "Retried"]

STORE_PATIENCE: Final = 120.0
"""Seconds the supervisor keeps retrying a database that does not answer."""

log = structlog.get_logger("gocaas.executor")


class Retried:
    """Every method of the wrapped repository, retried on StoreUnavailable for up to STORE_PATIENCE s."""

    def __init__(self, repo: BuildRepo) -> None:
        self._repo = repo
        self._retrying = Retrying(
            retry=retry_if_exception_type(StoreUnavailable),
            stop=stop_after_delay(STORE_PATIENCE),
            wait=wait_exponential(multiplier=0.1, max=5),
            before_sleep=lambda state: log.warning(
                "database unavailable, retrying",
                error=str(state.outcome.exception() if state.outcome else ""),
            ),
            reraise=True,
        )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._repo, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._retrying(method, *args, **kwargs)

        return call
