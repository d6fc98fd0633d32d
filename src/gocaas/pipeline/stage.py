"""The stage protocol: a name and a `run(ctx)` that returns a typed result, raises Skip with a reason, or
raises a GocaasError naming its failure class. Timing, logging and error handling wrap `run` (pipeline.run),
they do not live in it.

There is no god context: the frozen BuildSpec and Settings go in, and a stage reads what earlier stages
produced by asking for their result type (`ctx.need(ToolchainResult)`), so a dependency is explicit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gocaas.errors import InfraError
from gocaas.go.env import BuildDirs
from gocaas.pipeline.events import Event, EventSink, LogLine, Note, TargetFinished, TargetStarted
from gocaas.settings import Settings
from gocaas.spec import BuildSpec

R = TypeVar("R")
_choosing = threading.Lock()  # BuildContext.once


class Skip(Exception):
    """Raised by a stage that has nothing to do; the reason goes into the report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StageLog:
    """A stage's captured output: written to its log file and streamed to the sink, line by line."""

    def __init__(self, stage: str, path: Path, sink: EventSink) -> None:
        self.stage = stage
        self.path = path
        self._sink = sink
        self._handle = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()  # a stage's go commands may run at once (the matrix, test groups)
        self.notes: list[str] = []

    def line(self, text: str) -> None:
        with self._lock:  # a text file's write is not thread-safe: lines could interleave or be lost
            self._handle.write(text + "\n")
            self._handle.flush()
        self._sink(LogLine(self.stage, text))

    def note(self, text: str) -> None:
        """Something the user should see in the report, not only in the log."""
        self.notes.append(text)
        self.line(f"note: {text}")
        self._sink(Note(self.stage, text))

    def event(self, event: Event) -> None:
        self._sink(event)

    def target_started(self, target: str) -> None:
        self._sink(TargetStarted(self.stage, target))

    def target_finished(self, target: str, ok: bool, duration_s: float) -> None:
        self._sink(TargetFinished(self.stage, target, ok, duration_s))

    def close(self) -> None:
        self._handle.close()


@dataclass
class BuildContext:
    build_id: str
    spec: BuildSpec
    settings: Settings
    dirs: BuildDirs
    out_dir: Path
    deadline: float  # time.monotonic() by which the whole build must end
    log: StageLog
    results: dict[type, Any] = field(default_factory=dict)
    stage_names: list[str] = field(default_factory=list)  # the pipeline this build runs, in order

    def publish(self, result: object) -> None:
        """Make a result available now, e.g. the test report of a stage that is about to fail."""
        self.results[type(result)] = result

    def need(self, kind: type[R]) -> R:
        try:
            return self.results[kind]  # type: ignore[no-any-return]
        except KeyError:
            raise RuntimeError(f"stage order: {kind.__name__} is not available yet") from None

    def once(self, kind: type[R], choose: Callable[[], R]) -> R:
        """The build's published `kind`, chosen (and published) by its first caller: the test stage runs go
        commands from two threads, and a choice for the whole build (its sandbox, its cgroup) must be made,
        and said, once."""
        with _choosing:
            found: R | None = self.results.get(kind)
            if found is None:
                found = choose()
                self.publish(found)
        return found

    def remaining(self) -> float:
        """Seconds left before the build's deadline; past it, the build has timed out."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise InfraError(
                f"the build exceeded its {self.settings.build_timeout:.0f}s timeout", kind="timeout"
            )
        return left


class Stage(Protocol):
    name: str  # a class attribute of each stage (a LazyStage's own)

    def run(self, ctx: BuildContext) -> object | None: ...
