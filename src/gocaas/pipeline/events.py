"""What a running build tells whoever watches it. The sink is just a function, so the CLI view, a worker
and (later) the server share one runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gocaas.report.model import StageRecord


@dataclass(frozen=True)
class StageStarted:
    stage: str


@dataclass(frozen=True)
class StageFinished:
    record: StageRecord


@dataclass(frozen=True)
class TargetStarted:
    stage: str
    target: str


@dataclass(frozen=True)
class TargetFinished:
    stage: str
    target: str
    ok: bool
    duration_s: float


@dataclass(frozen=True)
class LogLine:
    stage: str
    text: str


@dataclass(frozen=True)
class Note:
    stage: str
    text: str


@dataclass(frozen=True)
class PackageTested:
    """A test package finished (streamed as `go test -json` reports it)."""

    stage: str
    package: str
    state: str
    passed: int
    failed: int
    skipped: int
    duration_s: float
    cached: bool


Event = StageStarted | StageFinished | TargetStarted | TargetFinished | LogLine | Note | PackageTested
EventSink = Callable[[Event], None]


def discard(_event: Event) -> None:
    """A sink for callers that do not watch."""
