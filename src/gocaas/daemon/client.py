"""The client side: hand a command to this user's daemon, or start one for next time.

Stdlib only, imported by the `gocaas` entry point before anything heavy. The client passes its stdin,
stdout and stderr and its working directory as descriptors, so the command's output goes straight to the
terminal or pipe the client has, then waits for the exit code and exits with it. Signals the client gets
(Ctrl-C, a CI runner's SIGTERM) are forwarded to the command's process group, which holds its go
commands as a terminal's foreground group would; if the client dies, the daemon stops the command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

from gocaas.daemon.identity import BadMode, DaemonPaths, daemon_paths, daemon_wanted, fingerprint
from gocaas.daemon.protocol import recv_message, send_message

COMMANDS = frozenset({"build", "test"})  # the commands run again and again, where start-up counts
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _stdio() -> tuple[list[int], list[int]]:
    """Descriptors 0-2 as they are, or /dev/null for a closed one; and the ones opened here."""
    fds, opened = [], []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            fds.append(null)
            opened.append(null)
    return fds, opened


def _encodings() -> list[list[str | None]]:
    return [
        [getattr(stream, "encoding", None), getattr(stream, "errors", None)]
        for stream in (sys.stdin, sys.stdout, sys.stderr)
    ]


def _request(argv: Sequence[str]) -> dict[str, object]:
    umask = os.umask(0o022)
    os.umask(umask)
    return {
        "argv": list(argv),
        "env": dict(os.environ),
        "umask": umask,
        "sys_path": sys.path,
        "stdio": _encodings(),
    }


def connectable(paths: DaemonPaths) -> bool:
    """Whether a daemon accepts connections on paths.socket (it sees a probe that sends nothing)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(paths.socket)
        except OSError:
            return False
    return True


def run_in_daemon(paths: DaemonPaths, argv: Sequence[str]) -> int | None:
    """The command's exit code, run by the daemon; None if no daemon took it (nothing ran: run it here)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        try:
            sock.connect(paths.socket)
        except OSError:
            return None
        try:
            cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None  # a deleted working directory: the in-process command says so properly
        fds, opened = _stdio()
        try:
            send_message(sock, _request(argv), [*fds, cwd])
            started, _ = recv_message(sock)
        except (OSError, ValueError):
            return None
        finally:
            for fd in (cwd, *opened):
                os.close(fd)
        if started is None or not isinstance(started.get("pid"), int):
            return None  # the daemon went away before forking (it was stopping): nothing ran
        return _wait(sock, started["pid"])


def _wait(sock: socket.socket, pid: int) -> int:
    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):  # already gone; its exit code is on the way
            os.killpg(pid, signum)

    for signum in _FORWARDED:
        signal.signal(signum, forward)
    try:
        done, _ = recv_message(sock)
    except (OSError, ValueError):
        done = None
    if done is None or not isinstance(done.get("exit"), int):
        sys.stderr.write(f"gocaas: the daemon stopped before the command (process {pid}) reported its exit\n")
        return 3  # ExitCode.INFRASTRUCTURE, not imported here: errors.py is not stdlib-only
    code: int = done["exit"]
    return code


def start_daemon(paths: DaemonPaths, fingerprint_: str) -> None:
    """Start a daemon in the background for the next command (it exits at once if one is starting)."""
    import subprocess

    try:
        log = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        return
    try:
        flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]  # multiprocessing's
        subprocess.Popen(  # noqa: S603 — our interpreter, our module, a hex fingerprint
            [sys.executable, *flags, "-m", "gocaas.daemon.server", "--fingerprint", fingerprint_],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",
            start_new_session=True,
        )
    except OSError:
        pass  # no daemon: every command runs in-process, as with GOCAAS_DAEMON=off
    finally:
        os.close(log)


def run(argv: Sequence[str]) -> int | None:
    """Run argv through the daemon if it is a daemon command and the daemon is wanted; the exit code, or
    None to run it in this process."""
    if len(argv) < 2 or argv[1] not in COMMANDS:
        return None
    try:
        if not daemon_wanted(os.environ):
            return None
    except BadMode as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    fingerprint_ = fingerprint()
    paths = daemon_paths(os.environ, fingerprint_)
    if paths is None:
        return None
    code = run_in_daemon(paths, argv)
    if code is None:
        start_daemon(paths, fingerprint_)
    return code
