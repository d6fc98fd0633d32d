"""Session traces on the cache server: which action entries one go command used, in the order it asked.

Why: a fresh worker's go command asks for its entries one at a time, mostly with one request in flight, so
fetching them one round trip each is latency-bound (warm `go build std`: 1,066 round trips, ~1 s on
loopback). Most go commands repeat an earlier one (the same build on another worker, or after a small
change), so when a session misses locally, the server can answer "here is everything the last session that
used this entry used" and the worker streams it in ahead of the go command (prefetch.py).

A trace is the list of action IDs a cacheprog session got (hits) or put, uploaded at its close (`PUT
/v1/{ns}/trace`). It is stored under `traces/<namespace>/<digest of the sorted IDs>` in the store's root, so
the same set uploaded again only refreshes its mtime. At most MAX_TRACES per namespace are kept (the oldest
go). The index, action ID → the newest trace holding it, is built in memory from the files the first time a
namespace is asked, and kept up to date by uploads. Traces hold keys only; the manifest answered for one is
read from the store at that moment, so an evicted entry is simply left out.
"""

# ruff: noqa: PTH110, PTH118, PTH123
from __future__ import annotations

import hashlib
import os
import threading

from gocaas.cache.files import mktemp, place, unlink, write_all
from gocaas.cache.store import MAX_KEY_BYTES, Entry, Store, check_namespace

MAX_TRACES = 200  # per namespace; ~1,500 IDs each for a std build: a few MB of index at most
MAX_TRACE_IDS = 200_000


class TraceError(ValueError):
    """A malformed trace upload (the message names what is wrong)."""


def parse_ids(body: bytes, limit: int = MAX_TRACE_IDS) -> list[bytes]:
    """Lines of lowercase hex keys (blank lines skipped), in order, duplicates dropped."""
    ids: list[bytes] = []
    seen: set[bytes] = set()
    for number, raw in enumerate(body.split(b"\n"), 1):
        line = raw.strip()
        if not line:
            continue
        try:
            key = bytes.fromhex(line.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise TraceError(f"line {number}: want a hex key, got {line[:80]!r}") from None
        if not 1 <= len(key) <= MAX_KEY_BYTES or line != line.lower():
            raise TraceError(f"line {number}: want 2-128 lowercase hex digits, got {line[:80]!r}")
        if key not in seen:
            seen.add(key)
            ids.append(key)
            if len(ids) > limit:
                raise TraceError(f"more than {limit} keys")
    return ids


class TraceStore:
    """The traces of one store root. Thread-safe (the server answers on many threads)."""

    def __init__(self, store: Store, max_traces: int = MAX_TRACES) -> None:
        self.store = store
        self.root = os.path.join(store.root, "traces")
        self.max_traces = max_traces
        self._lock = threading.Lock()
        self._index: dict[str, dict[bytes, str]] = {}  # namespace → action → trace name

    def add(self, namespace: str, ids: list[bytes]) -> str:
        """Record a session's trace; returns its name."""
        check_namespace(namespace)
        if not ids:
            raise TraceError("an empty trace")
        name = hashlib.sha256(b"".join(sorted(ids))).hexdigest()[:32]
        directory = os.path.join(self.root, namespace)
        path = os.path.join(directory, name)
        with self._lock:
            index = self._load(namespace)
            if os.path.exists(path):
                os.utime(path)  # the same set again: now the newest
            else:
                fd, tmp = mktemp(os.path.join(self.root, ".tmp"))
                try:
                    write_all(fd, b"".join(i.hex().encode() + b"\n" for i in ids))
                finally:
                    os.close(fd)
                place(tmp, path)
            for action_id in ids:
                index[action_id] = name
            if self._trim(namespace):
                del self._index[namespace]  # rebuilt from the files left at the next use
        return name

    def find(self, namespace: str, action_id: bytes) -> list[bytes] | None:
        """The newest trace holding action_id, or None."""
        check_namespace(namespace)
        with self._lock:
            name = self._load(namespace).get(action_id)
        if name is None:
            return None
        try:
            with open(os.path.join(self.root, namespace, name), "rb") as f:
                return parse_ids(f.read())
        except (FileNotFoundError, TraceError):
            return None

    def manifest(self, namespace: str, action_id: bytes) -> list[tuple[bytes, Entry]]:
        """The entries of the newest trace holding action_id that the store has now, in trace order."""
        ids = self.find(namespace, action_id)
        if ids is None:
            return []
        found = []
        for aid in ids:
            got = self.store.get(namespace, aid)
            if got is not None:
                found.append((aid, got))
        return found

    # -- internals (under the lock)
    def _names_oldest_first(self, namespace: str) -> list[tuple[float, str]]:
        directory = os.path.join(self.root, namespace)
        try:
            with os.scandir(directory) as it:
                return sorted((e.stat().st_mtime, e.name) for e in it if e.is_file())
        except FileNotFoundError:
            return []

    def _load(self, namespace: str) -> dict[bytes, str]:
        index = self._index.get(namespace)
        if index is None:
            index = {}
            for _mtime, name in self._names_oldest_first(namespace):
                try:
                    with open(os.path.join(self.root, namespace, name), "rb") as f:
                        ids = parse_ids(f.read())
                except (OSError, TraceError):
                    continue
                for action_id in ids:
                    index[action_id] = name  # newer traces overwrite older ones
            self._index[namespace] = index
        return index

    def _trim(self, namespace: str) -> bool:
        names = self._names_oldest_first(namespace)
        extra = len(names) - self.max_traces
        for _mtime, name in names[: max(0, extra)]:
            unlink(os.path.join(self.root, namespace, name))
        return extra > 0
