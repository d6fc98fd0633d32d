"""Which daemon a command may use, and where it listens.

A daemon is only used by a command that would have run the same code in the same interpreter: its
fingerprint covers the interpreter and its flags, the import path and the installed packages (by the
mtimes of sys.path's directories and the size and mtime of every gocaas source file), the user, groups,
CPU affinity, cgroup, resource limits and priority. A command with another fingerprint starts its own
daemon; an unused one exits when idle. Per-command state (argv, environment, working directory, umask,
stdio) is handed over with each command instead. Stdlib only: this runs before anything heavy is imported.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MODE_ENV = "GOCAAS_DAEMON"  # auto (default) | on | off
IDLE_ENV = "GOCAAS_DAEMON_IDLE"  # seconds a daemon waits for work before it exits
DEFAULT_IDLE = 900.0
MODES = ("auto", "on", "off")

_LIMITS = ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CPU")
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux


class BadMode(ValueError):
    pass


def daemon_wanted(env: Mapping[str, str]) -> bool:
    """GOCAAS_DAEMON: `auto` uses a daemon except on CI (CI=true), where one job runs one command and a
    daemon left behind would only be killed by the runner; `on` and `off` say so."""
    value = env.get(MODE_ENV, "").strip().lower() or "auto"
    if value not in MODES:
        raise BadMode(f"{MODE_ENV} must be one of {', '.join(MODES)}, not {env[MODE_ENV]!r}")
    wanted = not on_ci(env) if value == "auto" else value == "on"
    if wanted:
        idle_seconds(env)  # a bad value is the command's error, not a line in a daemon's log
    return wanted


def on_ci(env: Mapping[str, str]) -> bool:
    """CI=true (or 1, yes): one job runs one command, and what is left behind the runner kills; `auto`
    leaves out what only pays off on the next command (the daemon, a resident cache program)."""
    return env.get("CI", "").strip().lower() in ("1", "true", "yes")


def idle_seconds(env: Mapping[str, str]) -> float:
    text = env.get(IDLE_ENV, "").strip()
    try:
        seconds = float(text) if text else DEFAULT_IDLE
    except ValueError:
        raise BadMode(f"{IDLE_ENV} must be a number of seconds, not {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise BadMode(f"{IDLE_ENV} must be a positive number of seconds, not {text!r}")
    return seconds


def package_state(root: str) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every .py file under root: what an edit or a reinstall changes."""
    state = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)  # noqa: PTH118 (pathlib's import is startup time)
                info = os.stat(path)  # noqa: PTH116
                state.append((os.path.relpath(path, root), info.st_size, info.st_mtime_ns))
    return state


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns  # noqa: PTH116
    except OSError:
        return None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:  # noqa: PTH123
            return file.read()
    except OSError:
        return ""


def package_root() -> str:
    import gocaas

    return os.path.dirname(os.path.abspath(gocaas.__file__))  # noqa: PTH100, PTH120


def code_digest() -> str:
    """The installed code: sys.path's directories (their mtimes change when packages are installed) and
    every gocaas source file. sys.path[0] is left out: it is the script's directory for the console
    script and the working directory for `python -m`."""
    import hashlib  # here, not at the top: runtime_dir's users (cache.resident) start with every go command

    parts = ([(entry, _mtime(entry)) for entry in sys.path[1:]], package_state(package_root()))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def fingerprint() -> str:
    """This process's fingerprint (module docstring)."""
    import hashlib
    import resource

    limits = [resource.getrlimit(getattr(resource, name)) for name in _LIMITS if hasattr(resource, name)]
    parts = (
        sys.executable,
        sys.version,
        tuple(sys.flags),
        sys.warnoptions,
        sorted(sys._xoptions.items()),
        code_digest(),
        os.getuid(),
        os.getgid(),
        sorted(os.getgroups()),
        sorted(os.sched_getaffinity(0)),
        _read("/proc/self/cgroup"),
        limits,
        os.getpriority(os.PRIO_PROCESS, 0),  # `nice gocaas build` must not run at the daemon's priority
        sorted((k, v) for k, v in os.environ.items() if k.startswith(("PYTHON", "LC_")) or k == "LANG"),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


class PidFile:
    """What a daemon's pid file says: its pid, and which interpreter, package and code it serves (so a
    daemon started for newer code can tell one left over from older code apart from another install's)."""

    __slots__ = ("code", "executable", "pid", "root")

    def __init__(self, pid: int, executable: str, root: str, code: str) -> None:
        self.pid, self.executable, self.root, self.code = pid, executable, root, code

    @classmethod
    def mine(cls) -> PidFile:
        return cls(os.getpid(), sys.executable, package_root(), code_digest())

    def text(self) -> str:
        return f"{self.pid}\n{self.executable}\n{self.root}\n{self.code}\n"

    @classmethod
    def read(cls, path: str) -> PidFile | None:
        try:
            with open(path, encoding="utf-8") as file:  # noqa: PTH123
                pid, executable, root, code = file.read().split("\n")[:4]
            return cls(int(pid), executable, root, code)
        except (OSError, ValueError):
            return None


def runtime_dir(env: Mapping[str, str]) -> str | None:
    """A directory only this user can use ($XDG_RUNTIME_DIR/gocaas, else $TMPDIR/gocaas-UID), made if
    missing; None if it exists but is not a private directory of this user's (then no daemon is used)."""
    uid = os.getuid()
    candidates = []
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(env["XDG_RUNTIME_DIR"], "gocaas"))  # noqa: PTH118
    candidates += [os.path.join(env.get("TMPDIR") or "/tmp", f"gocaas-{uid}"), f"/tmp/gocaas-{uid}"]  # noqa: PTH118
    for path in candidates:
        if len(path) + 40 > _MAX_SOCKET_PATH:
            continue
        private = private_dir(path)
        if private is None:
            continue
        return path if private else None  # someone else's, or open to others: never listen or connect there
    return None


def private_dir(path: str) -> bool | None:
    """Whether path is a directory only this user can use, made (0700) if missing; None if it cannot be."""
    try:
        os.mkdir(path, 0o700)  # noqa: PTH102
    except FileExistsError:
        pass
    except OSError:
        return None
    info = os.lstat(path)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


class DaemonPaths:
    """A daemon's files: socket, lock, pid and log. (Not a dataclass: importing dataclasses costs the
    client 4 ms of its ~25.)"""

    __slots__ = ("directory", "fingerprint")

    def __init__(self, directory: str, fingerprint: str) -> None:
        self.directory = directory
        self.fingerprint = fingerprint

    def _file(self, suffix: str) -> str:
        return os.path.join(self.directory, f"d-{self.fingerprint}.{suffix}")  # noqa: PTH118

    @property
    def socket(self) -> str:
        return self._file("sock")

    @property
    def lock(self) -> str:
        return self._file("lock")

    @property
    def pid(self) -> str:
        return self._file("pid")

    @property
    def log(self) -> str:
        return self._file("log")


def daemon_paths(env: Mapping[str, str], fingerprint_: str) -> DaemonPaths | None:
    directory = runtime_dir(env)
    return DaemonPaths(directory, fingerprint_) if directory is not None else None
