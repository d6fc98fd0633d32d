"""The executor interface: what runs queued builds. `local` (worker processes on this machine) is the
embedded default; a distributed one (Celery) can take its place behind the same four methods.

Lifecycle: `start()` once (it recovers what a previous run left behind, then takes builds from the queue),
`wake()` whenever a build is queued or a cancel is requested (cheap, thread-safe, never blocks), `stop()`
once at shutdown (idempotent: running builds are killed and go back to the queue for the next start).
The queue itself is the builds table: executors claim builds from it, so nothing lives only in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gocaas.report.model import BuildReport
from gocaas.store.builds import BuildRecord

__all__ = ["BuildObserver", "Executor", "ExecutorState", "NullObserver"]


@dataclass(frozen=True, slots=True)
class ExecutorState:
    workers: int
    busy: int
    alive: bool


class Executor(Protocol):
    def start(self) -> None: ...

    def wake(self) -> None: ...

    def stop(self) -> None: ...

    def state(self) -> ExecutorState: ...


class BuildObserver(Protocol):
    """Told what happens to builds (metrics, long-poll waiters). Called from the executor's thread: keep it
    quick and thread-safe."""

    def build_changed(self, build_id: str) -> None: ...

    def stage_finished(self, stage: str, status: str, duration_s: float | None) -> None: ...

    def build_finished(self, record: BuildRecord, report: BuildReport | None) -> None: ...

    def workers_changed(self, busy: int, total: int) -> None: ...


class NullObserver:
    def build_changed(self, build_id: str) -> None:
        pass

    def stage_finished(self, stage: str, status: str, duration_s: float | None) -> None:
        pass

    def build_finished(self, record: BuildRecord, report: BuildReport | None) -> None:
        pass

    def workers_changed(self, busy: int, total: int) -> None:
        pass
