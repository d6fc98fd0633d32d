"""The daemon: import everything once, then fork a child per command.

One process per fingerprint (identity.py), listening on a Unix socket in a private runtime directory; a
lock file makes a second one started at the same moment exit at once. For each connection from this user
it reads the request, forks, and the child — in a new session, with the client's descriptors as 0-2, its
working directory, umask, environment and import path — runs the Typer command as `gocaas` would have
in-process, then exits. The daemon reaps the child (wait4) and sends its exit code to the client. A
client that goes away gets its command's process group SIGTERMed. With nothing running for
GOCAAS_DAEMON_IDLE seconds, or on SIGTERM once its commands finish, the daemon removes its socket and exits.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import importlib
import io
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from gocaas.cli.interrupt import stop_go_on_signals
from gocaas.daemon.client import COMMANDS
from gocaas.daemon.identity import BadMode, DaemonPaths, PidFile, daemon_paths, fingerprint, idle_seconds
from gocaas.daemon.protocol import ProtocolError, recv_message, send_message

# What a build imports after the CLI: the stages loaded lazily in-process are loaded here once.
PRELOAD = (
    "gocaas.cli.app",
    "gocaas.cli.view",
    "gocaas.pipeline.run",
    "gocaas.stages.modules",
    "gocaas.stages.vet",
    "gocaas.stages.test",
    "gocaas.stages.build",
    "gocaas.stages.package",
    "gocaas.store",
    "typer._click.decorators",  # what Typer itself imports on a command's first run
)
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_REQUEST_TIMEOUT = 10.0
_LOG_LIMIT = 1 << 20  # a line per command; a log past this is emptied when its daemon starts
_KEEP_OLD = 7 * 86400.0  # other fingerprints' leftovers (logs, lock files) are removed after a week


def warm_caches(command: Any) -> None:
    """Do once here what every command would otherwise do first (~15 ms of a 40 ms reused build):

    - ask the go on PATH its version and targets; both answers are remembered per binary file (path,
      inode, size, mtime), so a command that finds another go, or this one replaced, asks again;
    - build each option's pydantic adapter, which Typer makes on first use and keeps on the option;
    - compile Rich's markup and highlighting patterns (re's cache) and load its emoji table.
    """
    from rich.console import Console

    from gocaas.errors import GocaasError
    from gocaas.go.targets import supported_targets
    from gocaas.go.toolchain import on_path

    try:
        toolchain = on_path()
        if toolchain is not None:
            supported_targets(toolchain.go)
    except GocaasError as exc:
        log(f"go on PATH not asked ahead: {exc}")
    for name in sorted(COMMANDS):
        for param in getattr(getattr(command, "commands", {}).get(name), "params", ()):
            if hasattr(param, "get_runtime_param"):  # Typer's own parameter classes
                param.get_runtime_param()
    Console(file=io.StringIO(), force_terminal=True, width=100).print(
        "[bold]warm[/bold] :ok: (1.25) 'x' https://go.dev/ 127.0.0.1 sha256:0a1b", emoji=True
    )


def log(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [{os.getpid()}] {message}\n")
    sys.stderr.flush()


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _stream(fd: int, mode: str, encoding: str | None, errors: str | None) -> io.TextIOWrapper:
    interactive = os.isatty(fd)
    buffer = io.open(fd, f"{mode}b", closefd=False, buffering=-1)  # noqa: SIM115, UP020
    return io.TextIOWrapper(
        buffer, encoding=encoding, errors=errors, line_buffering=interactive, write_through=False
    )


def _prog_name(argv0: str) -> str:
    """What usage messages call the program, as Click would in the client's process."""
    if os.path.basename(argv0) == "__main__.py":  # noqa: PTH119
        return "python -m gocaas"
    return os.path.basename(argv0)  # noqa: PTH119


def run_child(request: dict[str, Any], fds: list[int], command: Callable[..., Any]) -> NoReturn:
    """In the forked child: become the client's command, run it, exit with its code."""
    code = 1
    try:
        os.setsid()  # its own process group: the client forwards signals to it, the daemon can stop it
        for signum in (signal.SIGCHLD, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        stop_go_on_signals()  # as in-process: the client forwards Ctrl-C and SIGTERM to this group
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.fchdir(fds[3])
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()
        sys.path[:] = request["sys_path"]
        sys.argv = list(request["argv"])
        (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = request["stdio"]
        sys.stdin = _stream(0, "r", in_enc, in_err)
        sys.stdout = _stream(1, "w", out_enc, out_err)
        sys.stderr = _stream(2, "w", err_enc, err_err)
        try:
            command.main(args=sys.argv[1:], prog_name=_prog_name(sys.argv[0]))  # type: ignore[attr-defined]
        except SystemExit as exc:
            code = _exit_code(exc.code)
        else:
            code = 0
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        # What the interpreter's own exit would do (os._exit skips it): join the threads the command left,
        # run its exit handlers. Then flush: the streams are the client's.
        with contextlib.suppress(BaseException):
            threading._shutdown()  # type: ignore[attr-defined]  # as multiprocessing's forked children do
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


def _valid(request: dict[str, Any], fds: list[int]) -> bool:
    argv, env, stdio = request.get("argv"), request.get("env"), request.get("stdio")
    return (
        len(fds) == 4
        and isinstance(argv, list)
        and bool(argv)
        and all(isinstance(a, str) for a in argv)
        and isinstance(env, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        and isinstance(request.get("umask"), int)
        and isinstance(request.get("sys_path"), list)
        and all(isinstance(p, str) for p in request["sys_path"])
        and isinstance(stdio, list)
        and len(stdio) == 3
        and all(isinstance(s, list) and len(s) == 2 for s in stdio)
    )


class Daemon:
    def __init__(self, paths: DaemonPaths, command: Callable[..., Any], idle: float, lock: int) -> None:
        self.paths = paths
        self.lock = lock  # held for the daemon's life; its children must not hold it on after it
        self.command = command
        self.idle = idle
        self.children: dict[int, socket.socket] = {}
        self.last_activity = time.monotonic()
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wakeup_r, self.wakeup_w = os.pipe()
        self.socket_inode = 0

    def listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):  # a dead daemon's: the lock says none is alive
            os.unlink(self.paths.socket)  # noqa: PTH108
        self.listener.bind(self.paths.socket)
        os.chmod(self.paths.socket, 0o600)  # noqa: PTH101
        self.socket_inode = os.stat(self.paths.socket).st_ino  # noqa: PTH116
        self.listener.listen(64)
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so the wakeup fd is written
        signal.signal(signal.SIGTERM, self._stop)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "signal")

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def serve(self) -> None:
        while True:
            if not self.children and (
                self.stopping or self._idle_for() >= self.idle or not self._still_ours()
            ):
                return
            timeout = None if self.children else max(0.0, min(self.idle - self._idle_for(), 30.0))
            for key, _ in self.selector.select(timeout):
                if key.data == "accept" and not self.stopping:
                    self._accept()
                elif key.data == "signal":
                    while True:
                        try:
                            if not os.read(self.wakeup_r, 512):
                                break
                        except BlockingIOError:
                            break
                elif isinstance(key.data, int):
                    self._client_readable(key.data, key.fileobj)  # type: ignore[arg-type]
            self._reap()

    def _idle_for(self) -> float:
        return time.monotonic() - self.last_activity

    def _still_ours(self) -> bool:
        try:
            return os.stat(self.paths.socket).st_ino == self.socket_inode  # noqa: PTH116
        except OSError:
            return False

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.last_activity = time.monotonic()
        _pid, uid, _gid = _PEERCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        if uid != os.getuid():
            log(f"refused a connection from uid {uid}")
            conn.close()
            return
        conn.settimeout(_REQUEST_TIMEOUT)
        try:
            request, fds = recv_message(conn, max_fds=4)
        except (OSError, ValueError, ProtocolError) as exc:
            log(f"bad request: {exc}")
            conn.close()
            return
        if request is None:  # connected and closed (a probe), or a client that died mid-request
            conn.close()
            return
        if not _valid(request, fds):
            log("bad request: not a gocaas client's")
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            for sock in (self.listener, *self.children.values(), conn):
                sock.close()
            for fd in (self.wakeup_r, self.wakeup_w, self.lock):
                os.close(fd)
            run_child(request, fds, self.command)
        for fd in fds:
            os.close(fd)
        log(f"process {pid}: {' '.join(request['argv'][1:])}")
        try:
            conn.settimeout(None)
            send_message(conn, {"pid": pid})
        except OSError:
            pass  # the client is gone: the readable conn below stops the command
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _client_readable(self, pid: int, conn: socket.socket) -> None:
        try:
            data = conn.recv(1)
        except OSError:
            data = b""
        if data:
            return  # clients send nothing after the request
        self.selector.unregister(conn)
        log(f"process {pid}: its client went away; stopping it")
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status, _usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if code < 0:
                code = 128 - code  # killed by a signal, as a shell reports it
            conn = self.children.pop(pid, None)
            log(f"process {pid}: exit {code}")
            self.last_activity = time.monotonic()
            if conn is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn)
            with contextlib.suppress(OSError):
                send_message(conn, {"exit": code})
            conn.close()

    def close(self) -> None:
        self.selector.close()
        if self._still_ours():
            with contextlib.suppress(OSError):
                os.unlink(self.paths.socket)  # noqa: PTH108
        self.listener.setblocking(False)
        while True:  # connections already queued: closing them unread tells their clients to run in-process
            try:
                conn, _ = self.listener.accept()
            except OSError:
                break
            conn.close()
        self.listener.close()


def retire_stale(paths: DaemonPaths) -> None:
    """SIGTERM the daemons this same interpreter and package left running for older code (gocaas was
    edited or upgraded since): no command will use them again. They finish what they run, then exit."""
    mine = PidFile.mine()
    with os.scandir(paths.directory) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        if not (name.startswith("d-") and name.endswith(".pid")) or name == f"d-{paths.fingerprint}.pid":
            continue
        other = PidFile.read(os.path.join(paths.directory, name))  # noqa: PTH118
        if other is None or (other.executable, other.root) != (mine.executable, mine.root):
            continue  # another install's daemon: its commands still use it
        if other.code != mine.code and _is_daemon(other.pid):
            log(f"daemon {other.pid} serves older code: asking it to stop")
            with contextlib.suppress(OSError):
                os.kill(other.pid, signal.SIGTERM)


def _is_daemon(pid: int) -> bool:
    """Whether pid is still a gocaas daemon (a pid file can outlive its process, and pids are reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:  # noqa: PTH123
            return b"gocaas.daemon.server" in file.read()
    except OSError:
        return False


def tidy(paths: DaemonPaths) -> None:
    """Empty our own log if it grew past its limit; remove the files of old daemons long gone."""
    try:
        if os.fstat(2).st_size > _LOG_LIMIT:
            os.ftruncate(2, 0)
    except OSError:
        pass
    cutoff = time.time() - _KEEP_OLD
    with os.scandir(paths.directory) as entries:
        for entry in entries:
            stem, _, suffix = entry.name.rpartition(".")
            if not stem.startswith("d-") or stem == f"d-{paths.fingerprint}" or suffix == "sock":
                continue
            try:
                if os.path.exists(os.path.join(paths.directory, f"{stem}.sock")):  # noqa: PTH110, PTH118
                    continue
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)  # noqa: PTH108
            except OSError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gocaas.daemon.server", description=__doc__)
    parser.add_argument("--fingerprint", required=True, help="the starting client's; must match ours")
    args = parser.parse_args(argv)
    try:
        idle = idle_seconds(os.environ)
    except BadMode as exc:
        log(str(exc))
        return 2
    for module in PRELOAD:
        importlib.import_module(module)
    from typer.main import get_command

    from gocaas.cli.app import app

    command = get_command(app)
    warm_caches(command)
    own = fingerprint()
    if own != args.fingerprint:
        log(f"fingerprint {own} is not the client's {args.fingerprint}: not serving")
        return 1
    paths = daemon_paths(os.environ, own)
    if paths is None:
        log("no private runtime directory: not serving")
        return 1
    lock = os.open(paths.lock, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another daemon with this fingerprint is starting or serving
    tidy(paths)
    retire_stale(paths)
    daemon = Daemon(paths, command, idle, lock)
    try:
        with open(paths.pid, "w", encoding="utf-8") as file:  # noqa: PTH123
            file.write(PidFile.mine().text())  # before listening: whoever can connect can read it
        daemon.listen()
        log(f"serving on {paths.socket} (idle exit after {idle:g} s)")
        daemon.serve()
    finally:
        daemon.close()
        with contextlib.suppress(OSError):
            os.unlink(paths.pid)  # noqa: PTH108
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
