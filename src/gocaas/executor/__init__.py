"""Executors run queued builds: `local` (worker processes here) is the embedded default. See base.py."""

from gocaas.executor.base import BuildObserver, Executor, ExecutorState, NullObserver
from gocaas.executor.local import LocalExecutor

__all__ = ["BuildObserver", "Executor", "ExecutorState", "LocalExecutor", "NullObserver"]
