"""Executors run queued builds: `local` (worker processes here) is the embedded default. See base.py.

An executor is chosen by name (`server_executor`), and only the chosen one is imported: a distributed
executor's dependencies (Celery, Redis) need not be installed to run the embedded default.
"""

from __future__ import annotations

import importlib
from typing import Final

from gocaas.errors import BadInput
from gocaas.executor.base import BuildObserver, Executor, ExecutorState, NullObserver
from gocaas.settings import Settings
from gocaas.store.store import Store

__all__ = ["EXECUTORS", "BuildObserver", "Executor", "ExecutorState", "NullObserver", "load_executor"]

EXECUTORS: Final = {"local": "gocaas.executor.local:LocalExecutor"}
"""Executor names and where each lives."""


def load_executor(
    name: str, settings: Settings, store: Store, *, workers: int, observer: BuildObserver
) -> Executor:
    try:
        module_name, _, class_name = EXECUTORS[name].partition(":")
    except KeyError:
        raise BadInput(
            f"unknown executor {name!r} (known: {', '.join(sorted(EXECUTORS))})", kind="bad_settings"
        ) from None
    factory = getattr(importlib.import_module(module_name), class_name)
    executor: Executor = factory(settings, store, workers=workers, observer=observer)
    return executor
