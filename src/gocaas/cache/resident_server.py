"""The resident cache program (`cacheprog --resident-serve`, started by resident.spawn): one process per
store and options, serving every go command that hands itself over (resident.py), each on a thread of its
own and in the namespace it names, all from one store that keeps the entries it has read or written in
memory (keyed by namespace: a go command sees only its own namespace's, as with a program of its own).

Why memory is safe here:
- The go command checks what it is handed: it stats the object and compares its size (GetFile), and
  treats a missing or short file as a miss, then puts it again (which updates the memory).
- Entries are remembered for MEMO_TTL_S at most, then read from disk again, which also refreshes their
  mtime for the LRU gc as every hit does (store.py).
- What changes entries behind our back bumps the store's epoch (Store.bump_epoch): a gc that removed files,
  `cache verify` or `cache clear` that removed entries, a `--refill` session replacing damaged ones. Each
  go command's session starts by checking it, and a new epoch forgets everything.

It exits after --resident-idle seconds without a go command (default options.RESIDENT_IDLE_S), when its
store's directory is gone, or when its socket is (removed or replaced: nobody can reach it any more); one
flock per socket keeps a second one from starting beside it (a go command that finds it stopped or hung
takes both socket and lock away, so that another can start: resident.forsake).
"""

# ruff: noqa: PTH108, PTH112, PTH116, PTH120, PTH123, PTH208 - str paths and os calls, as in the rest of the package

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time

from gocaas.cache.files import lock_file, mktemp, place, unlink, unlock_file, write_all
from gocaas.cache.lazyremote import lazy_remote
from gocaas.cache.prog import Server
from gocaas.cache.resident import ACK, FDS, HELLO, LOCK, READY, resident_key, socket_path
from gocaas.cache.store import TOUCH_INTERVAL_S, CacheError, Entry, Store, check_namespace
from gocaas.go.cgroups import leave_build_cgroup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gocaas.cache.options import Options

MEMO_TTL_S = TOUCH_INTERVAL_S / 2
MEMO_MAX = 1 << 18  # entries (~400 bytes each with their answer); past it the memory starts again
POLL_S = 1.0  # how often an idle program checks its idle time and its store
RECEIVE_TIMEOUT_S = 2.0  # resident.attach sends at once, right after it connects


class ResidentStore(Store):
    """A Store that remembers the entries it found or wrote (module docstring says why that is safe)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._memo: dict[tuple[str, bytes], tuple[Entry, str, float]] = {}
        self._epoch = self.epoch()

    def refresh(self) -> None:
        """At the start of a session: forget everything if the store's epoch moved."""
        epoch = self.epoch()
        if epoch != self._epoch:
            self._memo.clear()
            self._epoch = epoch

    def lookup(self, namespace: str, action_id: bytes) -> tuple[Entry, str] | None:
        key = (namespace, action_id)
        held = self._memo.get(key)
        now = time.monotonic()
        if held is not None and held[2] > now:
            return held[0], held[1]
        found = super().lookup(namespace, action_id)
        if found is None:
            self._memo.pop(key, None)
        else:
            self._remember(key, found[0], found[1], now)
        return found

    def written(self, namespace: str, action_id: bytes, entry: Entry, path: str) -> None:
        self._remember((namespace, action_id), entry, path, time.monotonic())

    def _remember(self, key: tuple[str, bytes], entry: Entry, path: str, now: float) -> None:
        if len(self._memo) >= MEMO_MAX:
            self._memo.clear()
        self._memo[key] = (entry, path, now + MEMO_TTL_S)


class Resident:
    """The accept loop and its sessions."""

    def __init__(self, opts: Options, listener: socket.socket, path: str) -> None:
        self.opts = opts
        self.path = path
        self.inode = os.stat(path).st_ino
        self.key = resident_key(opts).encode()
        self.listener = listener
        self.store = ResidentStore(
            opts.dir,
            read_only=opts.read_only,
            max_size=opts.max_size,
            min_age_s=opts.min_age,
            verify_limit=opts.verify_limit,
            min_free=opts.min_free,
        )
        self.active = 0
        self.last_active = time.monotonic()
        self.namespaces: set[str] = set()  # served so far: what `gocaas cache residents` shows
        self.started = time.time()
        self._lock = threading.Lock()

    def run(self) -> None:
        self.listener.settimeout(POLL_S)
        while True:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                if self._should_exit():
                    return
                continue
            except OSError as e:  # out of file descriptors, say: the go commands being served go on
                _say(f"accept: {e}")
                time.sleep(POLL_S)
                if self._should_exit():
                    return
                continue
            with conn:
                self._take(conn)

    def _should_exit(self) -> bool:
        """Idle too long, or unreachable (socket removed or replaced, store gone); never while a go command
        is being served: it finishes first."""
        with self._lock:
            if self.active:
                return False
            idle = time.monotonic() - self.last_active > self.opts.resident_idle
        if idle or not os.path.isdir(self.store.root):
            return True
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return True

    def _take(self, conn: socket.socket) -> None:
        """Receive one go command's pipes; serve them if the key and namespace are right (resident.py
        describes the handshake)."""
        conn.settimeout(RECEIVE_TIMEOUT_S)
        fds: list[int] = []
        try:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 16, len(FDS))  # none expected yet
            head, _, rest = data.partition(b"\n")
            key, _, rest = rest.partition(b"\0")
            namespace, _, stats_file = rest.partition(b"\0")
            if fds or head + b"\n" != HELLO or key != self.key or not _valid(namespace):
                raise ConnectionRefusedError
            conn.sendall(READY)
            _, fds, _, _ = socket.recv_fds(conn, 1, len(FDS))
            if len(fds) != len(FDS):
                raise ConnectionRefusedError
            conn.sendall(ACK)
        except OSError:  # refused; or it gave up waiting, or went away: it serves the go command itself
            for fd in fds:
                os.close(fd)
            return
        ns = namespace.decode("ascii")
        with self._lock:
            self.active += 1
            new = ns not in self.namespaces
            self.namespaces.add(ns)
            if new:
                try:
                    _describe(self.path, self.opts, sorted(self.namespaces), self.started)
                except OSError as e:  # only what `gocaas cache residents` shows: serve the go command
                    _say(f"cannot update {self.path}{INFO}: {e}")
        threading.Thread(target=self._session, args=(fds, ns, os.fsdecode(stats_file)), daemon=True).start()

    def _session(self, fds: list[int], namespace: str, stats_file: str) -> None:
        # per go command, as a program of its own would have
        remote = lazy_remote(self.store, self.opts, namespace)
        workers = self.opts.workers
        server = Server(self.store, namespace, workers=workers, stats_file=stats_file, remote=remote)
        server.resident = True
        try:
            self.store.refresh()
            server.serve(fds[0], fds[1])
        except Exception as e:  # the go command sees its pipe close and says so; the others go on
            _say(f"session ended: {type(e).__name__}: {e}")
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        try:
            server.finish()  # a due gc
        except Exception as e:
            _say(f"after a session: {type(e).__name__}: {e}")
        finally:
            with self._lock:
                self.active -= 1
                self.last_active = time.monotonic()


def _valid(namespace: bytes) -> bool:
    try:
        check_namespace(namespace.decode("ascii"))
    except (UnicodeDecodeError, CacheError):
        return False
    return True


def _say(message: str) -> None:
    sys.stderr.write(f"gocaas cacheprog (resident {os.getpid()}): {message}\n")
    sys.stderr.flush()


def serve_resident(opts: Options) -> int:
    """Serve go commands handed over at opts' socket until idle. 0 also when another one serves there."""
    key = resident_key(opts)
    path = socket_path(key, opts.runtime_dir)
    if path is None:
        _say("no private runtime directory for the socket")
        return 1
    lock = take_lock(path + LOCK)
    if lock is None:
        return 0  # another one started first
    os.chdir("/")  # not the first go command's module directory, which it would keep busy for its life
    leave_build_cgroup()  # it serves every build: not one build's limits, nor a reason to keep its cgroup
    try:
        with socket.socket(socket.AF_UNIX) as listener:
            unlink(path)  # left by one that was killed: we hold the lock, so nobody else is using it
            listener.bind(path)
            listener.listen(64)
            resident = Resident(opts, listener, path)
            _describe(path, opts, [], resident.started)
            try:
                resident.run()
            finally:
                with contextlib.suppress(OSError):  # unless replaced: remove ours before the lock goes
                    if os.stat(path).st_ino == resident.inode:
                        os.unlink(path)
                _remove_info(path + INFO)
    finally:
        unlock_file(lock)
    return 0


def take_lock(path: str) -> int | None:
    """The flock that makes this the one resident program at its socket, or None if another holds it. A go
    command that found the holder stopped or hung removed the lock file with the socket (resident.forsake),
    so a lock won on a file no longer at path (from before that, released since) is not it."""
    fd = lock_file(path, wait=False)
    if fd is None:
        return None
    try:
        held, there = os.fstat(fd), os.stat(path)
        if (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino):
            return fd
    except OSError:
        pass
    unlock_file(fd)
    return None


def _remove_info(path: str) -> None:
    """Remove this program's info file, unless a replacement's is there by now (its pid on the first line)."""
    try:
        with open(path, encoding="utf-8") as info:
            if info.readline().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError:
        pass


INFO = ".info"  # next to the socket: what `gocaas cache residents` shows


class ResidentInfo:
    """A running resident program, as its info file and lock say."""

    __slots__ = ("namespaces", "pid", "read_only", "socket", "started", "store")

    def __init__(self, socket_path: str, lines: list[str]) -> None:
        self.socket = socket_path
        self.pid, self.store = int(lines[0]), lines[1]
        self.namespaces = tuple(ns for ns in lines[2].split(",") if ns)  # served so far
        self.read_only, self.started = lines[3] == "read-only", float(lines[4])


def _describe(path: str, opts: Options, namespaces: list[str], started: float) -> None:
    mode = "read-only" if opts.read_only else "read-write"
    text = f"{os.getpid()}\n{opts.dir}\n{','.join(namespaces)}\n{mode}\n{started:.3f}\n"
    fd, tmp = mktemp(os.path.dirname(path), ".info-")
    try:
        write_all(fd, text.encode())
    finally:
        os.close(fd)
    place(tmp, path + INFO)


def running(directory: str) -> list[ResidentInfo]:
    """The resident programs serving from the runtime directory (their lock held, their socket there)."""
    found: list[ResidentInfo] = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return found
    for name in names:
        if not (name.startswith("cp-") and name.endswith(".sock")):
            continue
        path = f"{directory}/{name}"
        fd = lock_file(path + LOCK, wait=False)
        if fd is not None:  # nobody holds it: a leftover
            unlock_file(fd)
            continue
        try:
            with open(path + INFO, encoding="utf-8") as info:
                found.append(ResidentInfo(path, info.read().split("\n")))
        except (OSError, ValueError, IndexError):
            continue  # starting, or not one of ours
    return found


def stop(resident: ResidentInfo, timeout: float = 5.0) -> bool:
    """Remove its socket, which it notices within POLL_S and ends after its sessions; whether it ended."""
    unlink(resident.socket)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fd = lock_file(resident.socket + LOCK, wait=False)
        if fd is not None:
            unlock_file(fd)
            return True
        time.sleep(0.05)
    return False
