"""Running one go command: an argument list (never a shell string), an explicit environment, a deadline,
the whole process group killed on timeout, and deaths by signal translated into infrastructure errors."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gocaas.errors import InfraError
from gocaas.go.cgroups import BuildCgroup
from gocaas.go.env import check_flags
from gocaas.go.reaper import REAPER
from gocaas.go.sandbox import Sandbox

LineSink = Callable[[str], None]

# How the go runtime (compiler, linker, go itself) and a failed fork say memory ran out, as whole lines: a
# damaged cache can make go print a cached binary, whose string table holds these words mid-line.
OUT_OF_MEMORY = re.compile(r"^(?:fatal error: )?runtime: out of memory|cannot allocate memory\s*$", re.M)

# Every go command runs in its own session (so a timeout kills all it started), out of reach of the
# terminal's Ctrl-C: these are the ones to stop when gocaas itself is interrupted (stop_running).
_running: set[subprocess.Popen[str]] = set()
_running_lock = threading.RLock()  # stop_running may run in a signal handler of a thread holding it


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


# Characters of each stream a CommandResult keeps; the sink still sees every line. A test that logs without
# end, or a damaged cache that makes go replay binaries as compiler output (gigabytes from one go test), would
# otherwise be held in memory whole, and joined, searched and split more than once.
CAPTURE_LIMIT = 16 << 20


def _pump(stream: IO[str], into: list[str], sink: LineSink | None) -> None:
    limit, kept, dropped = CAPTURE_LIMIT, 0, 0
    for line in stream:
        if kept + len(line) <= limit:
            kept += len(line)
            into.append(line)
        else:
            dropped += len(line)
        if sink is not None:
            sink(line.rstrip("\n"))
    if dropped:
        into.append(f"[gocaas: {dropped} more characters of this output were not kept]\n")


def run_command(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    on_line: LineSink | None = None,
    on_stdout: LineSink | None = None,
    what: str | None = None,
    cgroup: BuildCgroup | None = None,
) -> CommandResult:
    """Run a program to completion; stderr lines go to on_line, stdout lines to on_stdout as they come; in
    cgroup, with all it starts, if one is given. Raises InfraError on timeout or a death by signal."""
    label = what or " ".join(args[:3])
    start = time.monotonic()
    try:
        proc = subprocess.Popen(  # noqa: S603 - argument list built by gocaas, no shell
            list(args),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise InfraError(f"cannot run {args[0]}: {exc}", kind="toolchain") from exc
    REAPER.watch(proc.pid)  # its session's group: killed if gocaas dies before it has waited for it
    if cgroup is not None:
        cgroup.adopt(proc.pid)
    with _running_lock:
        _running.add(proc)
    out: list[str] = []
    err: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, out, on_stdout), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, on_line), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    # A blocking wait with a watchdog, not wait(timeout=...): that one polls with sleeps of up to 50 ms,
    # which every go command would pay after it has already finished.
    expired = threading.Event()
    watchdog = threading.Timer(timeout, _expire, args=(proc, expired))
    watchdog.daemon = True
    watchdog.start()
    try:
        proc.wait()
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): the command must not outlive gocaas
        _kill_session(proc)
        raise
    finally:
        watchdog.cancel()
        REAPER.release(proc.pid)
        with _running_lock:
            _running.discard(proc)
        for pump in pumps:
            pump.join(timeout=5)
    if expired.is_set():
        raise InfraError(f"{label} timed out after {timeout:.0f}s", kind="timeout")
    result = CommandResult(tuple(args), proc.returncode, "".join(out), "".join(err), time.monotonic() - start)
    if result.returncode < 0:
        signum = -result.returncode
        if signum == signal.SIGKILL:
            oom = OUT_OF_MEMORY.search(result.stderr) is not None
            raise InfraError(
                f"{label} was killed (SIGKILL){': out of memory' if oom else ', likely out of memory'}",
                kind="out_of_memory",
            )
        raise InfraError(f"{label} was killed by signal {signal.Signals(signum).name}", kind="killed")
    if OUT_OF_MEMORY.search(result.stderr):
        raise InfraError(f"{label} ran out of memory", kind="out_of_memory")
    return result


def _expire(proc: subprocess.Popen[str], expired: threading.Event) -> None:
    """The watchdog: kill the command's whole session (go and what it started) unless it already ended."""
    if proc.poll() is None:
        expired.set()
        _kill_session(proc)


def _kill_session(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def stop_running() -> int:
    """Kill every go command this process is running (each with what it started); how many there were.
    For a signal handler: commands waited on by other threads end too, not only the main thread's."""
    with _running_lock:
        procs = [proc for proc in _running if proc.returncode is None]
    for proc in procs:
        _kill_session(proc)
    return len(procs)


def run_go(
    go: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    on_line: LineSink | None = None,
    on_stdout: LineSink | None = None,
    sandbox: Sandbox | None = None,
    cgroup: BuildCgroup | None = None,
) -> CommandResult:
    """Run `go ARGS...` with the environment from gocaas.go.env, in the sandbox and cgroup if given."""
    check_flags(args)
    check_flags(env.get("GOFLAGS", "").split())
    argv = [str(go), *args]
    return run_command(
        sandbox.wrap(argv, cwd) if sandbox is not None else argv,
        env=env,
        cwd=cwd,
        timeout=timeout,
        on_line=on_line,
        on_stdout=on_stdout,
        what=f"go {' '.join(args[:2])}",
        cgroup=cgroup,
    )
