"""A content-addressed store on local disk.

Layout under the root (`$GOCAAS_HOME/cache` by default):

    objects/<2hex>/<64hex>                 bodies, named by their SHA-256 (what the go command calls OutputID)
    actions/<namespace>/<2hex>/<hex>       action entries, one line: "v1 <output hex> <size> <put time ns>"
                                           [" <signature hex>"] (a server's signed entries, signing.py)
    tmp/                                   files being written, renamed into place when complete
    usage                                  estimated total size in bytes (every gc rewrites it from disk)
    gc-short                               its mtime: when a gc last ended with the disk under min_free
    epoch                                  its mtime: when entries were last removed or replaced (bump_epoch)

Writes go to a temp file in tmp/ (same filesystem) and are renamed into place with os.replace, so readers,
in this process or any other, see a whole file or none, and a killed writer leaves only a temp file. No
fsync (a cache is not worth the latency): after a power loss, files written just before may be empty or
wrong; size checks and rehashing on reads turn most of that into misses, and `maintenance.verify` finds the
rest. Objects are shared by all namespaces (a name is its content's hash, so sharing is safe); action
entries belong to one namespace.

Reads check the object's size against the entry, and rehash objects up to `verify_limit` bytes (64 KiB: most
objects, a fraction of the bytes; the go command itself rehashes what it reads whole, such as test results);
a mismatch is a miss and the bad file is removed (unless read-only). `maintenance.verify` rehashes everything.

Recency and eviction: a hit sets the mtime of its object and entry to now when the object's is older than
TOUCH_INTERVAL_S (at most one utime per file per interval, like the go command's own cache); gc evicts by
oldest mtime but never a file younger than `min_age`. That is how a DiskPath handed to a running go command
outlives its `close`: keep `min_age` above the longest go command plus TOUCH_INTERVAL_S (the default, 2 h,
covers gocaas's 1 h build timeout). See maintenance.py.

This module imports only os, time, files.py, diskspace.py and usage_file.py at load: the GOCACHEPROG
program starts with every go command.
"""

# str paths and os calls on purpose: this runs inside every go command, and pathlib costs import time
# (re, fnmatch, urllib) and microseconds per call.
# ruff: noqa: PTH100, PTH103, PTH111, PTH113, PTH116, PTH118, PTH123, PTH202

from __future__ import annotations

import os
import time
from binascii import Error as BinasciiError
from binascii import unhexlify

from gocaas.cache.diskspace import DiskWatch, MinFree
from gocaas.cache.files import (
    ObjectWriter,
    mktemp,
    place,
    sha256,
    touch,
    unlink,
    write_all,
)
from gocaas.cache.usage_file import UsageFile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

TOUCH_INTERVAL_S = 600
MIN_AGE_S = 7200
DEFAULT_MAX_SIZE = 10 << 30
DEFAULT_VERIFY_LIMIT = 64 << 10  # 3/4 of a std build's objects; rehashing them on hits cost ~1% here
ACCOUNT_EVERY = 64 << 20  # bytes added in-process between updates of the shared usage estimate
MAX_KEY_BYTES = 64
_NS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_CHUNK = 1 << 20


class CacheError(Exception):
    """A problem with the store itself or with a request (never a plain miss)."""


class Entry:
    """An action entry: the output it names, that output's size, when it was put, and the signature of a
    trusted writer if it has one (signing.py; not part of equality)."""

    __slots__ = ("answer", "output_id", "sig", "size", "time_ns")

    def __init__(self, output_id: bytes, size: int, time_ns: int, sig: bytes = b"") -> None:
        self.output_id = output_id
        self.size = size
        self.time_ns = time_ns
        self.sig = sig
        self.answer = b""  # the GOCACHEPROG get answer for it, once made (prog.Server._answer_get)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return (self.output_id, self.size, self.time_ns) == (other.output_id, other.size, other.time_ns)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Entry(output_id={self.output_id.hex()}, size={self.size}, time_ns={self.time_ns})"


def default_cache_dir(environ: dict[str, str] | None = None) -> str:
    """$GOCAAS_HOME/cache, else $XDG_DATA_HOME/gocaas/cache, else ~/.local/share/gocaas/cache."""
    env = os.environ if environ is None else environ
    home = env.get("GOCAAS_HOME")
    if not home:
        base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        home = os.path.join(base, "gocaas")
    return os.path.join(home, "cache")


def check_namespace(namespace: str) -> str:
    if not namespace or len(namespace) > 100 or namespace[0] == "." or not _NS_CHARS.issuperset(namespace):
        raise CacheError(f"bad namespace {namespace!r}: use 1-100 of [A-Za-z0-9._-], not starting with '.'")
    return namespace


def _check_key(key: bytes, what: str) -> str:
    if not key or len(key) > MAX_KEY_BYTES:
        raise CacheError(f"bad {what}: {len(key)} bytes")
    return key.hex()


class Store:
    """The local disk tier. Thread-safe, and any number of processes may share one root.

    `get`/`put`/`has`/`open` are the `Backend` interface (backend.py); `path`, `writer` and `commit` are
    the local extras the GOCACHEPROG server uses to stream bodies to disk and hand out paths.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        read_only: bool = False,
        max_size: int | None = DEFAULT_MAX_SIZE,
        min_age_s: float = MIN_AGE_S,
        verify_limit: int = DEFAULT_VERIFY_LIMIT,
        min_free: MinFree | None = None,
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.read_only = read_only
        self.max_size = max_size
        self.disk = DiskWatch(self.root, min_free)  # the space its filesystem keeps free
        self.min_age_s = min_age_s
        self.verify_limit = verify_limit
        self.objects_dir = os.path.join(self.root, "objects")
        self.actions_dir = os.path.join(self.root, "actions")
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.usage = UsageFile(os.path.join(self.root, "usage"))
        self.epoch_file = os.path.join(self.root, "epoch")
        self.added = 0  # bytes of new files this process wrote and has not yet added to the usage estimate
        self.over_budget = False  # past max_size, or the disk under min_free: the owner runs gc
        self.corrupt = 0  # entries or objects found bad (and removed unless read-only) by get
        self._namespaces: set[str] = set()  # checked already

    # -- paths
    def path(self, output_id: bytes) -> str:
        return self._object_path(_check_key(output_id, "output ID"))

    def _object_path(self, output_hex: str) -> str:
        return f"{self.objects_dir}/{output_hex[:2]}/{output_hex}"

    def action_path(self, namespace: str, action_id: bytes) -> str:
        h = _check_key(action_id, "action ID")
        if namespace not in self._namespaces:
            self._namespaces.add(check_namespace(namespace))
        return f"{self.actions_dir}/{namespace}/{h[:2]}/{h}"

    # -- Backend interface
    def get(self, namespace: str, action_id: bytes) -> Entry | None:
        """The entry for action_id when it and its object are present and sane, else None (a miss)."""
        found = self.lookup(namespace, action_id)
        return found[0] if found is not None else None

    def lookup(self, namespace: str, action_id: bytes) -> tuple[Entry, str] | None:
        """`get`, with the path of the object file (local extra: what the go command is handed).

        The hot path of every warm go command (a get each for ~1,000 actions in `go build std`): os calls
        only, and the entry is parsed once into what the answer needs."""
        apath = self.action_path(namespace, action_id)
        try:
            fd = os.open(apath, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            raw = os.read(fd, 256)
        finally:
            os.close(fd)
        parsed = _parse_entry_hex(raw)
        if parsed is None:
            self.corrupt += 1
            self._remove(apath)
            return None
        entry, out_hex = parsed
        opath = self._object_path(out_hex)
        try:
            st = os.stat(opath)
        except FileNotFoundError:
            return None  # evicted or not yet there; gc removes dangling entries
        if st.st_size != entry.size:
            self._discard(apath, opath, entry, hashed=False)
            return None
        if entry.size <= self.verify_limit and not self._hash_ok(opath, entry):
            self._discard(apath, opath, entry, hashed=True)
            return None
        if not self.read_only and time.time() - st.st_mtime > TOUCH_INTERVAL_S:
            if not touch(opath):
                return None  # a gc took it between our stat and touch
            touch(apath)  # entries age with their object (an entry never outlives it usefully)
        return entry, opath

    def put(self, namespace: str, action_id: bytes, output_id: bytes, body: bytes | BinaryIO) -> Entry:
        """Store body as output_id (checked against its hash) and record action_id → output_id."""
        writer = self.writer()
        try:
            if isinstance(body, bytes | bytearray | memoryview):
                writer.write(body)
            else:
                while chunk := body.read(_CHUNK):
                    writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return self.commit(namespace, action_id, output_id, writer)[0]

    def has(self, output_id: bytes) -> bool:
        return os.path.isfile(self.path(output_id))

    def open(self, output_id: bytes) -> BinaryIO | None:
        """The object's body for reading (a remote tier uploads from it), or None."""
        try:
            return open(self.path(output_id), "rb")
        except FileNotFoundError:
            return None

    # -- local extras
    def writer(self) -> ObjectWriter:
        """A temp file for one body, hashed as it is written; `commit` moves it into place."""
        return ObjectWriter(*self._mktemp())

    def commit(
        self,
        namespace: str,
        action_id: bytes,
        output_id: bytes,
        writer: ObjectWriter,
        time_ns: int | None = None,
    ) -> tuple[Entry, bool]:
        """Move a finished writer's file into place as output_id and write the action entry (put at time_ns,
        default now). Returns the entry and whether the object was new to the store."""
        try:
            self.action_path(namespace, action_id)  # check the key and namespace before moving anything
        except BaseException:
            writer.abort()
            raise
        new = self.commit_object(output_id, writer)
        return self.put_entry(namespace, action_id, output_id, writer.size, time_ns), new

    def commit_object(self, output_id: bytes, writer: ObjectWriter) -> bool:
        """Move a finished writer's file into place as output_id (refused unless it hashes to it); whether
        the object was new to the store."""
        writer.close()
        try:
            opath = self.path(output_id)
            if writer.digest() != output_id:
                raise CacheError(f"body of {writer.size} bytes does not hash to output ID {output_id.hex()}")
        except BaseException:
            writer.abort()
            raise
        new = not self.holds(output_id, writer.size)
        if new:
            place(writer.path, opath)
            self._account(writer.size)
        else:
            unlink(writer.path)  # already there (another action, namespace or process put it)
        return new

    def holds(self, output_id: bytes, size: int) -> bool:
        """Whether output_id is here with this size, refreshing it if so: a gc leaves it alone from now until
        min_age has passed, so a put that finds it may write only its entry. For writers only."""
        self._writable()
        opath = self.path(output_id)
        try:
            return touch(opath) and os.path.getsize(opath) == size
        except FileNotFoundError:  # a gc took it between the two
            return False

    def put_entry(
        self,
        namespace: str,
        action_id: bytes,
        output_id: bytes,
        size: int,
        time_ns: int | None = None,
        sig: bytes = b"",
    ) -> Entry:
        """Record action_id → output_id (the caller has checked that the object is there)."""
        apath = self.action_path(namespace, action_id)
        entry = Entry(output_id, size, time.time_ns() if time_ns is None else time_ns, sig)
        signed = f" {sig.hex()}" if sig else ""
        line = f"v1 {output_id.hex()} {entry.size} {entry.time_ns}{signed}\n".encode()
        fd, tmp = self._mktemp()
        try:
            write_all(fd, line)
        finally:
            os.close(fd)
        place(tmp, apath)
        self.written(namespace, action_id, entry, self._object_path(output_id.hex()))
        return entry

    def written(self, namespace: str, action_id: bytes, entry: Entry, path: str) -> None:
        """After put_entry: for a store that remembers entries (resident_server.ResidentStore)."""

    def epoch(self) -> int:
        """When something last removed or replaced entries behind readers' backs (0: never)."""
        try:
            return os.stat(self.epoch_file).st_mtime_ns
        except FileNotFoundError:
            return 0

    def bump_epoch(self) -> None:
        """Say that entries were removed or replaced: resident programs forget what they hold
        (resident_server.py). A gc, verify, clear or refill that changed something calls this."""
        os.makedirs(self.root, exist_ok=True)
        os.close(os.open(self.epoch_file, os.O_WRONLY | os.O_CREAT, 0o644))
        now = time.time_ns()
        os.utime(self.epoch_file, ns=(now, max(now, self.epoch() + 1)))

    # -- internals
    def _writable(self) -> None:
        if self.read_only:
            raise CacheError(f"the store {self.root} is open read-only")

    def _mktemp(self) -> tuple[int, str]:
        self._writable()
        return mktemp(self.tmp_dir)

    def _hash_ok(self, opath: str, entry: Entry) -> bool:
        """Whether the object hashes to the entry's output ID."""
        fd = os.open(opath, os.O_RDONLY)
        try:
            if entry.size <= self.verify_limit:  # one read: a regular file gives all of it at once
                return sha256(os.read(fd, entry.size + 1)).digest() == entry.output_id
            h = sha256()
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
            return h.digest() == entry.output_id
        finally:
            os.close(fd)

    def _discard(self, apath: str, opath: str, entry: Entry, *, hashed: bool) -> None:
        """A size or hash mismatch: remove whichever file is wrong (the object unless it hashes right)."""
        self.corrupt += 1
        if self.read_only:
            return
        if not hashed and self._hash_ok(opath, entry):
            self._remove(apath)  # the object is sound, the entry lies about its size
        else:
            self._remove(opath)

    def _remove(self, path: str) -> None:
        if not self.read_only:
            unlink(path)

    def _account(self, nbytes: int) -> None:
        self.added += nbytes
        if self.disk.wrote(nbytes):
            self.over_budget = True
        if self.added >= ACCOUNT_EVERY or (self.max_size is not None and self.added >= self.max_size // 10):
            self.flush_usage()

    def flush_usage(self) -> int:
        """Add this process's new bytes to the shared usage estimate; return the estimate."""
        added, self.added = self.added, 0
        total = self.usage.add(added)
        if (self.max_size is not None and total > self.max_size) or self.disk.short():
            self.over_budget = True
        return total

    def usage_estimate(self) -> int:
        """The shared usage estimate plus what this process added since it last flushed; nothing written."""
        return self.usage.read() + self.added


def _parse_entry(raw: bytes) -> Entry | None:
    parsed = _parse_entry_hex(raw)
    return parsed[0] if parsed is not None else None


def _parse_entry_hex(raw: bytes) -> tuple[Entry, str] | None:
    """An entry file's contents: the entry and its output ID in hex (the object's file name)."""
    parts = raw.split()
    if not 4 <= len(parts) <= 5 or parts[0] != b"v1" or len(parts[1]) != 64 or not raw.endswith(b"\n"):
        return None
    try:
        sig = unhexlify(parts[4]) if len(parts) == 5 else b""
        return Entry(unhexlify(parts[1]), int(parts[2]), int(parts[3]), sig), parts[1].decode("ascii")
    except (ValueError, BinasciiError):
        return None
