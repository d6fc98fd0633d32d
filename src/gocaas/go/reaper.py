"""Go commands must not outlive gocaas, even when it dies by SIGKILL (the OOM killer, `kill -9`, a container
stopped past its grace period) and cannot stop them itself: a `go test` left running holds its CPUs until its
-timeout, and keeps writing into a workspace that a restarted worker builds in again.

Every go command runs in a session of its own (runner.py), so its process group holds it and all it started.
The first go command of a gocaas process starts a reaper: this file run as a script (`python -I -S`, standard
library only: ~15 ms, in the background), in a session of its own, reading a pipe whose write end only that
gocaas process holds. gocaas writes "+PGID" when a command starts and "-PGID" once it has waited for it; when
the pipe ends, because gocaas exited however it died, the reaper kills the groups still listed, and exits.

PR_SET_PDEATHSIG would need code between fork and exec (preexec_fn: unsafe with threads), and it reaches
only the go command, not the test binaries and compilers it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading


class Reaper:
    """The gocaas side: `watch(pgid)` after starting a command, `release(pgid)` after waiting for it. Never
    raises: without a reaper (it could not start, or was killed) commands run as before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd = -1
        self._proc: subprocess.Popen[bytes] | None = None
        self._inherited: list[subprocess.Popen[bytes]] = []

    def watch(self, pgid: int) -> None:
        self._send(b"+%d\n" % pgid, start=True)

    def release(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid, start=False)

    def _send(self, line: bytes, *, start: bool) -> None:
        with self._lock:
            if self._fd < 0 and start:
                self._start()
            if self._fd < 0:
                return
            try:
                os.write(self._fd, line)  # a short line to a pipe: written whole, at once
            except OSError:  # the reaper is gone: start another with the next command
                self._forget()

    def _start(self) -> None:
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - our interpreter and this file, no shell
                [sys.executable, "-I", "-S", __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,  # out of reach of the terminal's Ctrl-C, and of a killpg of gocaas's
            )
        except OSError:
            return
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()

    def _forget(self) -> None:
        """Let go of the reaper: the end of its pipe ends it (killing what is listed: normally nothing)."""
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        self._fd, self._proc = -1, None

    def after_fork_in_child(self) -> None:
        """A forked child has its own commands: its copy of the parent's pipe must not keep the parent's
        reaper waiting after the parent died. (The Popen is kept: dropping it would have the child reap a
        process that is not its own.)"""
        self._lock = threading.Lock()
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
            self._inherited.append(self._proc)
        self._fd, self._proc = -1, None


REAPER = Reaper()
os.register_at_fork(after_in_child=REAPER.after_fork_in_child)


def main() -> None:
    """The reaper: keep the list from stdin; at its end, kill what is on it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        try:
            pgid = int(line[1:])
        except ValueError:
            continue
        if line.startswith(b"+"):
            groups.add(pgid)
        elif line.startswith(b"-"):
            groups.discard(pgid)
    for pgid in groups:
        with contextlib.suppress(OSError):  # ended meanwhile
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
