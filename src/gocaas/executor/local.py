"""The local executor: N worker processes on this machine and one supervisor thread that feeds them.

The supervisor is the only writer of a running build's record: it claims queued builds in priority order
(with aging), hands each to an idle worker, records the stages, log chunks and report the worker sends back,
and watches the processes. A worker that dies (SIGKILL, out of memory) is replaced and its build re-queued
until `server_max_attempts`; a cancel or a build past its hard deadline kills the worker's whole process
tree. Workers are spawned, not forked: the server process has threads, and fork would copy their locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any, Final, cast

import structlog

from gocaas.errors import InfraError
from gocaas.executor.base import BuildObserver, ExecutorState, NullObserver
from gocaas.executor.outcome import infra_outcome, report_outcome
from gocaas.executor.procs import kill_tree
from gocaas.executor.retried import Retried
from gocaas.executor.scheduler import order
from gocaas.executor.worker import Job, worker_main
from gocaas.report.model import BuildReport
from gocaas.settings import Settings
from gocaas.store.builds import (
    BuildRecord,
    BuildRepo,
    BuildState,
    Outcome,
    StageRecordRow,
)
from gocaas.store.store import Store
from gocaas.store.tenants import TenantRepo

__all__ = ["LocalExecutor", "lock_data_dir"]

TICK: Final = 0.5
"""Seconds between checks that need no event: cancels flagged in the database, deadlines."""

GRACE: Final = 60.0
"""The pipeline enforces build_timeout itself; the supervisor kills a worker this much later."""

log = structlog.get_logger("gocaas.executor")


def lock_data_dir(home: Path) -> IO[str]:
    """One local executor per data directory: a second one would re-queue the first one's running builds
    as left behind, and run them twice. Held while the returned file is open; the kernel drops it with the
    process, however that ends."""
    path = home / "executor.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise InfraError(
            f"another gocaas serve ({holder}) runs builds from {home}: stop it, or give this one its own "
            "GOCAAS_HOME (or --workers 0 to serve the API only)",
            kind="busy",
        ) from None
    lock.truncate(0)
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}")
    lock.flush()
    return lock


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    build_id: str | None = None
    deadline: float = 0.0
    timeout: float = 0.0

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{self.process.pid}"


class LocalExecutor:
    def __init__(
        self, settings: Settings, store: Store, *, workers: int, observer: BuildObserver | None = None
    ) -> None:
        self._settings = settings
        # The supervisor's reads and writes wait out a database outage instead of dropping what a worker
        # said (a lost "done" would leave a build running until the next restart).
        self._builds = cast(BuildRepo, Retried(BuildRepo(store)))
        self._tenants = TenantRepo(store)
        self._tenant_names: dict[int, str] = {}
        self._size = workers
        self._observer = observer or NullObserver()
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._wake_r, self._wake_w = self._context.Pipe(duplex=False)
        self._wake_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue_may_have_work = True
        self._last_tick = 0.0
        self._early_deaths = 0
        self._respawn_at: list[float] = []
        self._lock_file: IO[str] | None = None

    # --- the interface ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._lock_file = lock_data_dir(self._settings.home)
        self._recover()
        self._workers = [self._spawn() for _ in range(self._size)]
        self._thread = threading.Thread(target=self._loop, name="gocaas-supervisor", daemon=True)
        self._thread.start()
        log.info("executor started", workers=self._size)

    def wake(self) -> None:
        with self._wake_lock, contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"w")

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for worker in self._workers:
            if worker.build_id is not None:
                kill_tree(worker.process.pid or 0)
                self._builds.requeue(worker.build_id, "the server stopped during the build; re-queued")
            with contextlib.suppress(OSError):
                worker.conn.close()
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                kill_tree(worker.process.pid or 0)
        if self._lock_file is not None:
            self._lock_file.close()
        log.info("executor stopped")

    def state(self) -> ExecutorState:
        busy = sum(1 for w in self._workers if w.build_id is not None)
        alive = self._thread is not None and self._thread.is_alive()
        return ExecutorState(workers=len(self._workers), busy=busy, alive=alive)

    # --- the supervisor loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._step()
            except Exception:  # keep supervising; the database may come back
                log.exception("supervisor step failed")
                time.sleep(TICK)

    def _step(self) -> None:
        waitables: list[Any] = [self._wake_r]
        for worker in self._workers:
            waitables += [worker.conn, worker.process.sentinel]
        ready = wait(waitables, timeout=TICK)
        if self._wake_r in ready:
            while self._wake_r.poll():
                self._wake_r.recv_bytes()
            self._queue_may_have_work = True
        for worker in list(self._workers):
            self._drain(worker)
        for worker in list(self._workers):
            if not worker.process.is_alive():
                self._lost(worker)
        now = time.monotonic()
        while self._respawn_at and self._respawn_at[0] <= now and not self._stopping.is_set():
            self._respawn_at.pop(0)
            self._workers.append(self._spawn())
        if self._wake_r in ready or now - self._last_tick >= TICK:
            self._last_tick = now
            self._queue_may_have_work = True
            self._enforce(now)
        self._dispatch()

    def _drain(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                self._handle(worker, worker.conn.recv())
        except (EOFError, OSError):
            pass  # it died; the sentinel check replaces it

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            self._queue_may_have_work = True
            self._observer.workers_changed(*self._utilisation())
        elif kind == "progress":
            _, build_id, stages, log_text = message
            records = [StageRecordRow(*stage) for stage in stages]
            self._builds.record_progress(build_id, records, log_text)
            for stage in records:
                if stage.status != "running":
                    self._observer.stage_finished(stage.name, stage.status, stage.duration_s)
            self._observer.build_changed(build_id)
        elif kind in ("done", "crash"):
            build_id = message[1]
            worker.build_id = None
            outcome, report = (
                report_outcome(message[2])
                if kind == "done"
                else (infra_outcome(f"internal error in the worker: {message[2]}", "internal"), None)
            )
            self._finish(build_id, outcome, report)

    def _finish(self, build_id: str, outcome: Outcome, report: BuildReport | None) -> None:
        if self._builds.finish(build_id, outcome):
            record = self._builds.get(build_id)
            assert record is not None
            log.info(
                "build finished", build_id=build_id, status=outcome.status.value, kind=outcome.failure_kind
            )
            if record.upload:
                Path(record.upload).unlink(missing_ok=True)
            self._observer.build_finished(record, report)
        self._observer.build_changed(build_id)
        self._observer.workers_changed(*self._utilisation())

    def _lost(self, worker: _Worker) -> None:
        """A worker process is gone: replace it, and re-queue (or fail) the build it had."""
        self._workers.remove(worker)
        code = worker.process.exitcode
        with contextlib.suppress(OSError):
            worker.conn.close()
        build_id = worker.build_id
        if build_id is not None and not self._stopping.is_set():
            record = self._builds.get(build_id)
            why = f"worker process {worker.process.pid} died (exit code {code})"
            log.warning("worker lost", build_id=build_id, pid=worker.process.pid, exitcode=code)
            if record is None or record.status is not BuildState.RUNNING:
                pass
            elif record.cancel_requested:
                self._finish(build_id, Outcome(BuildState.CANCELLED, message="cancelled while running"), None)
            elif record.attempts >= self._settings.server_max_attempts:
                self._builds.append_log(
                    build_id, f"!!! {why}; that was attempt {record.attempts}: giving up\n"
                )
                self._finish(
                    build_id, infra_outcome(f"{why} on attempt {record.attempts}", "worker_lost"), None
                )
            else:
                self._builds.append_log(build_id, f"!!! {why} during attempt {record.attempts}; re-queued\n")
                self._builds.requeue(build_id, f"{why}; re-queued")
                self._observer.build_changed(build_id)
                self._queue_may_have_work = True
        if self._stopping.is_set():
            return
        if not worker.ready:
            # It died before it could take a build (a broken install, no memory): back off, don't spin.
            self._early_deaths += 1
            delay = min(30.0, 0.5 * 2**self._early_deaths)
            log.error("worker died on start", exitcode=code, retry_in=delay)
            self._respawn_at.append(time.monotonic() + delay)
        else:
            self._early_deaths = 0
            self._workers.append(self._spawn())

    def _enforce(self, now: float) -> None:
        """Cancels flagged in the database and hard deadlines: kill the worker (its _lost does the rest)."""
        running = {w.build_id: w for w in self._workers if w.build_id is not None}
        cancelled = self._builds.cancel_requested(list(running))
        for build_id, worker in running.items():
            if build_id in cancelled:
                log.info("cancelling", build_id=build_id)
                kill_tree(worker.process.pid or 0)
            elif now > worker.deadline:
                log.warning("build past its deadline", build_id=build_id)
                kill_tree(worker.process.pid or 0)
                worker.build_id = None
                self._finish(
                    build_id,
                    infra_outcome(f"the build exceeded its {worker.timeout:.0f}s timeout", "timeout"),
                    None,
                )

    def _dispatch(self) -> None:
        idle = [w for w in self._workers if w.ready and w.build_id is None and w.process.is_alive()]
        if not idle or not self._queue_may_have_work:
            return
        queued = order(self._builds.queued(), datetime.now(UTC), self._settings.server_aging_seconds)
        if len(queued) <= len(idle):
            self._queue_may_have_work = False
        for build in queued:
            if not idle:
                break
            worker = idle[0]
            record = self._builds.claim(build.id, worker.name)
            if record is None:
                continue  # cancelled meanwhile
            idle.pop(0)
            self._start(worker, record)

    def _start(self, worker: _Worker, record: BuildRecord) -> None:
        worker.build_id = record.id
        timeout = record.timeout_s or self._settings.build_timeout
        worker.deadline = time.monotonic() + timeout + GRACE
        worker.timeout = timeout
        if record.attempts > 1:
            self._builds.append_log(record.id, f"--- attempt {record.attempts} ---\n")
        log.info("build started", build_id=record.id, worker=worker.name, attempt=record.attempts)
        with contextlib.suppress(OSError):  # it died just now: _lost re-queues the build
            worker.conn.send(Job(record.id, record.spec, self._namespace(record.tenant_id), timeout))
        self._observer.build_changed(record.id)
        self._observer.workers_changed(*self._utilisation())

    def _namespace(self, tenant_id: int) -> str:
        if tenant_id not in self._tenant_names:
            self._tenant_names = self._tenants.tenant_names()
        return self._tenant_names.get(tenant_id, f"tenant-{tenant_id}")

    def _utilisation(self) -> tuple[int, int]:
        return sum(1 for w in self._workers if w.build_id is not None), len(self._workers)

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=worker_main, args=(child, self._settings), name="gocaas-worker", daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _recover(self) -> None:
        """What the last run left: running builds go back to the queue (or fail past their attempts)."""
        for record in self._builds.running():
            if record.attempts >= self._settings.server_max_attempts:
                self._builds.finish(
                    record.id,
                    infra_outcome(f"the server stopped during attempt {record.attempts}", "worker_lost"),
                )
            else:
                self._builds.append_log(record.id, "!!! the server stopped during the build; re-queued\n")
                self._builds.requeue(record.id, "the server stopped during the build; re-queued")
        log.info("queue recovered")
