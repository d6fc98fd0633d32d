"""Per-build resource limits: the go commands that run a build's module code (go test; stages/limits.py),
with the compilers and test binaries they start, run in a cgroup of the build's own, with a memory limit
and a limit on processes and threads. A test that leaks memory or forks without end then fails its own
build, which says which limit it reached, instead of taking down the worker's other builds or the machine.

The build's cgroups are made under gocaas's own (`own_dir`), named `gocaas-build-<id>_p<gocaas's pid>`:
with cgroup v1, one in the memory hierarchy and one in the pids hierarchy; with v2, one in the unified
hierarchy, whose parent must delegate the memory and pids controllers. When neither works here (not
root, no such controller, a v2 parent that holds processes itself), CgroupUnavailable says why.

How a go command gets in: `adopt` moves it, and whatever it has started by then (bubblewrap's child, the
go command inside), right after it starts; what they start later is born inside. A move costs one RCU
grace period of the kernel (13-26 ms here; more moves right after it are ~free). Only preexec_fn could
put it in before its exec, and that is unsafe in a process with threads (reaper.py says the same). By
the time a go command runs anything of the module's, it is inside.

Not a security boundary: a test running as root can move itself out. It stops accidents.

Standard library only, and lean (the resident cache program calls `leave_build_cgroup` as it starts).
"""

# ruff: noqa: PTH102, PTH106, PTH118, PTH119, PTH120, PTH123, PTH208 - cgroupfs paths as str, and os calls

from __future__ import annotations

import contextlib
import os
import signal
import time

PREFIX = "gocaas-build-"
V1_CONTROLLERS = ("memory", "pids")
OWNER = "_p"  # a build cgroup's name ends with the pid of the gocaas process that made it (see _sweep)


class CgroupUnavailable(Exception):
    """Why this machine does not let gocaas make a build's cgroup."""


class LimitCounters:
    """How often a build's cgroup enforced its limits so far: processes killed for memory, and processes
    or threads refused."""

    __slots__ = ("oom_kills", "pids_refused")

    def __init__(self, oom_kills: int = 0, pids_refused: int = 0) -> None:
        self.oom_kills, self.pids_refused = oom_kills, pids_refused


def _mounts() -> tuple[dict[str, str], str | None]:
    """v1 hierarchies (controller → mount point, for the ones this module uses) and the v2 mount point."""
    v1: dict[str, str] = {}
    v2 = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return v1, v2
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts, tail = fields.split(), rest.split()
        if len(parts) < 5 or len(tail) < 3 or parts[3] != "/":  # a bind of a subtree: not ours to use
            continue
        if tail[0] == "cgroup2":
            v2 = parts[4]
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in V1_CONTROLLERS:
                    v1[option] = parts[4]
    return v1, v2


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and "" → its v2 path."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f.read().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def own_dir(controller: str) -> str | None:
    """This process's cgroup directory in the v1 hierarchy of controller ("": in the v2 one), where that is
    mounted; None if it is not (resources.py reads its memory limits here too)."""
    v1, v2 = _mounts()
    mount = v2 if controller == "" else v1.get(controller)
    path = _own_paths().get(controller)
    return None if mount is None or path is None else os.path.normpath(os.path.join(mount, path.lstrip("/")))


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _field(text: str, name: str) -> int:
    """The number after `name` in a flat keyed file (memory.events, pids.events, memory.oom_control)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


def parents() -> tuple[int, dict[str, str]]:
    """(cgroup version, controller → the directory build cgroups go under: gocaas's own cgroup), or
    CgroupUnavailable saying why neither version can be used."""
    found = {c: own_dir(c) for c in V1_CONTROLLERS}
    dirs = {c: path for c, path in found.items() if path is not None}
    if len(dirs) == len(V1_CONTROLLERS):
        for controller, path in dirs.items():
            if not os.access(path, os.W_OK):
                raise CgroupUnavailable(f"cgroup v1: cannot make cgroups in {path} ({controller}; not root?)")
        return 1, dirs
    parent = own_dir("")
    if parent is None:
        missing = [c for c in V1_CONTROLLERS if c not in dirs]
        raise CgroupUnavailable(f"no cgroup v2 mount, and no cgroup v1 hierarchy for {', '.join(missing)}")
    try:
        available = _read(os.path.join(parent, "cgroup.controllers")).split()
        enabled = _read(os.path.join(parent, "cgroup.subtree_control")).split()
    except OSError as e:
        raise CgroupUnavailable(f"cgroup v2: cannot read {parent}: {e.strerror}") from None
    lacking = [c for c in V1_CONTROLLERS if c not in available]
    if lacking:
        raise CgroupUnavailable(f"cgroup v2: {parent} is not given the {' and '.join(lacking)} controller")
    wanted = [c for c in V1_CONTROLLERS if c not in enabled]
    if wanted:
        try:
            _write(os.path.join(parent, "cgroup.subtree_control"), " ".join(f"+{c}" for c in wanted))
        except OSError as e:  # EBUSY: gocaas itself is in it (no process may sit beside child cgroups)
            raise CgroupUnavailable(
                f"cgroup v2: cannot delegate {' and '.join(wanted)} to child cgroups of {parent} "
                f"({e.strerror}); run gocaas in a cgroup of its own with them delegated (systemd: "
                "Delegate=yes)"
            ) from None
    return 2, {"": parent}


class BuildCgroup:
    """One build's cgroups (one per v1 controller, or one v2 cgroup), made by `create`, removed by `close`."""

    def __init__(self, version: int, dirs: dict[str, str], memory: int | None, pids: int | None) -> None:
        self.version, self.dirs, self.memory, self.pids = version, dirs, memory, pids

    @classmethod
    def create(cls, build_id: str, *, memory: int | None, pids: int | None) -> BuildCgroup:
        """The cgroups of build_id with these limits (None: none of that kind); CgroupUnavailable if not."""
        version, parent_dirs = parents()
        safe_id = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in build_id)[:100]
        name = f"{PREFIX}{safe_id}{OWNER}{os.getpid()}"
        dirs: dict[str, str] = {}
        cgroup = cls(version, dirs, memory, pids)
        try:
            for controller, parent in parent_dirs.items():
                _sweep(parent)
                path = os.path.join(parent, name)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path)
                dirs[controller] = path
            limits = {
                "memory": ("memory.limit_in_bytes" if version == 1 else "memory.max", memory),
                "pids": ("pids.max", pids),
            }
            for controller, (file, value) in limits.items():
                if value is not None:
                    _write(os.path.join(dirs[controller if version == 1 else ""], file), str(value))
        except OSError as e:
            cgroup.close()
            raise CgroupUnavailable(f"cgroup v{version}: cannot make {name}: {e}") from None
        return cgroup

    def adopt(self, pid: int) -> bool:
        """Move pid and every process it has started so far into the build's cgroups; whether all went in.
        A process that has ended meanwhile is no failure; a cgroup that refuses one never fails the command
        (it runs without the limits)."""
        moved: set[int] = set()
        complete = True
        for _ in range(5):  # until a pass finds nothing new: one may have forked while we moved the others
            pending = [p for p in _descendants(pid) if p not in moved]
            if not pending:
                return complete
            for p in pending:
                for path in self.dirs.values():
                    try:
                        _write(os.path.join(path, "cgroup.procs"), str(p))
                    except ProcessLookupError:
                        pass
                    except OSError:  # removed under us, or refused
                        complete = False
                moved.add(p)
        return complete

    def counters(self) -> LimitCounters:
        if self.version == 1:
            oom = _safe_field(self.dirs.get("memory"), "memory.oom_control", "oom_kill")
            pids = _safe_field(self.dirs.get("pids"), "pids.events", "max")
        else:
            oom = _safe_field(self.dirs[""], "memory.events", "oom_kill")
            pids = _safe_field(self.dirs[""], "pids.events", "max")
        return LimitCounters(oom, pids)

    def close(self, timeout: float = 5.0) -> bool:
        """Kill what is left in the build's cgroups (nothing a build started may outlive it) and remove
        them; whether they are gone."""
        deadline = time.monotonic() + timeout
        gone = True
        for path in self.dirs.values():
            while _kill_all(path) and time.monotonic() < deadline:
                time.sleep(0.01)
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                gone = False
        return gone

    def describe_memory(self) -> str:
        return f"memory {_size(self.memory)}" if self.memory is not None else "no memory limit"

    def describe(self) -> str:
        pids = f"{self.pids} processes and threads" if self.pids is not None else "no process limit"
        return f"{self.describe_memory()}, {pids} (cgroup v{self.version})"


def _safe_field(directory: str | None, file: str, name: str) -> int:
    if directory is None:
        return 0
    try:
        return _field(_read(os.path.join(directory, file)), name)
    except OSError:
        return 0


def _kill_all(path: str) -> bool:
    """SIGKILL every process in the cgroup at path; whether there were any."""
    try:
        pids = [int(p) for p in _read(os.path.join(path, "cgroup.procs")).split()]
    except OSError:
        return False
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return bool(pids)


def _descendants(root: int) -> list[int]:
    """root and the processes under it, parents before children, from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = _read(f"/proc/{name}/stat")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2:
            children.setdefault(int(fields[1]), []).append(int(name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, ()))
    return found


def _sweep(parent: str) -> None:
    """Remove the build cgroups under parent whose gocaas process is gone (killed outright: SIGKILL, the
    OOM killer), with whatever they still hold, which must not outlive it (go/reaper.py says why)."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        owner = name.rpartition(OWNER)[2]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        path = os.path.join(parent, name)
        deadline = time.monotonic() + 1.0
        while _kill_all(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.3g} {unit}"
    return f"{n} bytes"


def leave_build_cgroup() -> None:
    """Move this process out of any build cgroup it was born in, into that cgroup's parent: for what a go
    command starts that outlives the build (the resident cache program), which would otherwise count
    against one build's limits and keep its cgroup from being removed. Best effort."""
    for controller in ("", *V1_CONTROLLERS):
        inside = own_dir(controller)
        if inside is not None and os.path.basename(inside).startswith(PREFIX):
            with contextlib.suppress(OSError):
                _write(os.path.join(os.path.dirname(inside), "cgroup.procs"), str(os.getpid()))
