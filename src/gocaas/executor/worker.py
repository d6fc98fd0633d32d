"""A worker process: takes one build at a time over its pipe, runs the ordinary pipeline on it, and sends
back what happens (stages, log chunks, the report). It never touches the database: the supervisor records
what it says, so a worker killed mid-build loses nothing but its own pipe."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Final

from gocaas.pipeline.events import (
    Event,
    LogLine,
    Note,
    PackageTested,
    StageFinished,
    StageStarted,
    TargetFinished,
    TargetStarted,
)
from gocaas.settings import Settings
from gocaas.spec import BuildSpec

__all__ = ["Job", "worker_main"]

_PR_SET_PDEATHSIG: Final = 1

FLUSH_SECONDS: Final = 0.25
"""How often buffered stage changes and log lines go to the supervisor: live enough to follow, and a build
answered in milliseconds (a result-cache hit) costs one database transaction, not one per event."""


@dataclass(frozen=True, slots=True)
class Job:
    build_id: str
    spec: str
    namespace: str
    timeout_s: float


@dataclass
class _Forwarder:
    """The pipeline's event sink in a worker: stage changes and log lines, sent in batches."""

    conn: Connection
    build_id: str
    stage_names: list[str]
    lines: list[str] = field(default_factory=list)
    stages: dict[int, tuple[int, str, str, float | None, str | None]] = field(default_factory=dict)
    last_flush: float = field(default_factory=time.monotonic)
    # Events come from the matrix's threads too, and the ticker flushes while a stage is quiet.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event) -> None:
        with self.lock:
            self._take(event)
            if (self.lines or self.stages) and time.monotonic() - self.last_flush >= FLUSH_SECONDS:
                self._flush()

    def _take(self, event: Event) -> None:
        match event:
            case StageStarted(stage=name):
                self._stage(name, "running", None, None)
                self.lines.append(f"==> {name}")
            case StageFinished(record=record):
                took = f" in {record.duration_s:.2f}s" if record.status != "skipped" else ""
                why = f": {record.skip_reason}" if record.skip_reason else ""
                self.lines.append(f"<== {record.name} {record.status}{took}{why}")
                self._stage(record.name, record.status.value, record.duration_s, record.skip_reason)
            case LogLine(stage=stage, text=text):
                self.lines.append(f"[{stage}] {text}")
            case Note(stage=stage, text=text):
                self.lines.append(f"[{stage}] note: {text}")
            case TargetStarted(stage=stage, target=target):
                self.lines.append(f"[{stage}] {target}: started")
            case TargetFinished(stage=stage, target=target, ok=ok, duration_s=took):
                self.lines.append(f"[{stage}] {target}: {'ok' if ok else 'FAILED'} in {took:.2f}s")
            case PackageTested() as tested:
                cached = " (cached)" if tested.cached else ""
                self.lines.append(
                    f"[{tested.stage}] {tested.state} {tested.package} {tested.duration_s:.2f}s{cached} "
                    f"passed={tested.passed} failed={tested.failed} skipped={tested.skipped}"
                )

    def _stage(self, name: str, status: str, duration_s: float | None, skip_reason: str | None) -> None:
        position = self.stage_names.index(name) if name in self.stage_names else len(self.stage_names)
        self.stages[position] = (position, name, status, duration_s, skip_reason)  # the latest state wins

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def ticker(self, stop: threading.Event) -> None:
        """Flush what a quiet stage has buffered (a test running for minutes shows it is running)."""
        while not stop.wait(FLUSH_SECONDS):
            self.flush()

    def _flush(self) -> None:
        if self.lines or self.stages:
            text = "\n".join(self.lines) + "\n" if self.lines else ""
            self.conn.send(("progress", self.build_id, list(self.stages.values()), text))
            self.lines.clear()
            self.stages.clear()
        self.last_flush = time.monotonic()


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the server process dies, even by SIGKILL, so no orphan keeps
    running a build that the restarted server runs again. Best effort elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the server died before the request took effect
        os._exit(1)


def worker_main(conn: Connection, settings: Settings) -> None:
    """The worker process's main: run jobs until the pipe closes or says stop."""
    from gocaas.pipeline.run import DEFAULT_STAGES
    from gocaas.telemetry import build_span, configure_tracing

    os.setpgrp()  # not in the server's terminal group: ^C reaches the server, which stops the workers
    _die_with_parent()
    configure_tracing(settings, service="gocaas-worker")
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if not isinstance(message, Job):
            return
        stage_names = [stage.name for stage in DEFAULT_STAGES]
        sink = _Forwarder(conn, message.build_id, stage_names)
        with build_span(message.build_id, message.namespace) as span_sink:
            conn.send(_run(message, settings, sink, span_sink))
        conn.send(("ready", os.getpid()))


def _run(
    job: Job, settings: Settings, sink: _Forwarder, span_sink: Callable[[Event], None]
) -> tuple[str, str, str]:
    from gocaas.pipeline.run import run_build

    try:
        spec = BuildSpec.model_validate_json(job.spec)
        build_settings = settings.model_copy(
            update={"cache_namespace": job.namespace, "build_timeout": job.timeout_s}
        )
        root = settings.builds_dir / job.build_id
        shutil.rmtree(root, ignore_errors=True)  # a re-run after a lost worker starts clean

        def both(event: Event) -> None:
            sink(event)
            span_sink(event)

        stop = threading.Event()
        ticker = threading.Thread(target=sink.ticker, args=(stop,), daemon=True)
        ticker.start()
        try:
            report = run_build(spec, build_settings, out_dir=root / "out", sink=both, build_id=job.build_id)
        finally:
            stop.set()
            ticker.join()
        sink.flush()
        return ("done", job.build_id, report.to_json())
    except Exception:  # the pipeline classifies build failures itself: this is a bug, reported as one
        sink.lines.append(traceback.format_exc())
        sink.flush()
        return ("crash", job.build_id, traceback.format_exc(limit=1).strip().splitlines()[-1])
