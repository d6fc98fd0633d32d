"""Prefetching for cacheprog's remote tier: stream in what the go command is about to ask for.

A fresh worker's go command asks for its entries one at a time (warm `go build std`: 1,066 gets, mostly one
in flight), so fetching each on its own costs a round trip each and leaves the link idle in between. At the
first local miss, the worker asks the server for the manifest of the newest session trace holding that
action (traces.py): the entries that session used, in the order it used them. It writes the entries whose
object it already has, then asks for all the missing objects in one pack request and writes them into the
local store as they stream in, in the order the go command is likely to ask. A get for an action in the
manifest waits for it to arrive instead of fetching it alone; a get for one outside every manifest asks for
another manifest (up to MAX_MANIFESTS per session), or is fetched alone.

Nothing here fails a build: a manifest or pack that fails releases its waiters, who fetch on their own
(remote.py), and the stream stops at the session's close. A get that has waited `stall_s` while the packs
brought less than MIN_RATE ends the prefetching for the session: a pack dripping just fast enough to pass
every read's timeout would otherwise hold each get for `stall_s` (a 1,000-get build, half an hour). A stall,
a cut pack and a body that does not hash to its name are failures of the remote, struck on its breaker
(`strike`); a breaker that opens stops the prefetching too (remote.py).
"""

# ruff: noqa: PTH202 - str paths and os calls, as in store.py
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from queue import Queue, SimpleQueue
from typing import Any

from gocaas.cache.client import MIN_RATE, HTTPRemote, RemoteError
from gocaas.cache.files import ObjectWriter
from gocaas.cache.packstream import PackStream
from gocaas.cache.store import Entry, Store

MAX_MANIFESTS = 4
TIGHT_ENOUGH = 0.9  # a session that used less of its manifests than this sends its own trace
WAIT_MAX_S = 20.0
BUFFER_MAX = 4 << 20  # objects up to this are read whole and handed to a writer thread
QUEUED_OBJECTS = 16  # at most this many read and not yet written (memory: QUEUED_OBJECTS * BUFFER_MAX)
WRITERS = max(1, min(4, len(os.sched_getaffinity(0))))  # one per CPU: file creation is kernel CPU time


class Prefetcher:
    def __init__(
        self,
        store: Store,
        namespace: str,
        client: HTTPRemote,
        *,
        guarded: Callable[..., Any],
        failed: Callable[[BaseException], None],
        strike: Callable[[BaseException], None],
        count: Callable[..., None],
        stall_s: float = 2.0,
        vet: Callable[[list[tuple[bytes, Entry]]], list[tuple[bytes, Entry]]] = lambda manifest: manifest,
    ) -> None:
        self.store, self.namespace, self.client = store, namespace, client
        self._vet = vet  # the manifest's entries to take (RemoteTier: signed ones, with a verifier)
        self._guarded, self._failed, self._strike, self._count = guarded, failed, strike, count
        self.stall_s = stall_s
        self._cond = threading.Condition()
        self._expected: set[bytes] = set()  # actions of the manifests being streamed
        self._settled: set[bytes] = set()  # of those, the ones here or given up
        self._ready: dict[bytes, tuple[Entry, str]] = {}  # of those, the ones here: entry, object path
        # entries whose object is here, to write: after answering, on their own thread (write-behind)
        self._entries: SimpleQueue[tuple[bytes, Entry] | None] = SimpleQueue()
        self._entry_writer: threading.Thread | None = None
        self._loading = 0  # manifests asked for and not yet answered
        self._asked = 0
        self._stopped = False
        self._streams: list[PackStream] = []
        self._threads: list[threading.Thread] = []

    def covered(self, action_ids: list[bytes]) -> bool:
        """Whether the manifests this session streamed were this trace, near enough: every one of action_ids
        was in them, and they held little else (a trace much larger than what the go command used, say a
        cold build's for a warm one, costs the next worker files it never reads: better send this one)."""
        used = set(action_ids)
        with self._cond:
            expected = self._expected
            return bool(expected) and expected.issuperset(used) and len(used) >= len(expected) * TIGHT_ENOUGH

    def ready(self, action_id: bytes) -> tuple[Entry, str] | None:
        """The entry and object path if a prefetch has brought it in already (no lock: a dict read)."""
        return self._ready.get(action_id)

    def fetch(self, action_id: bytes) -> tuple[Entry, str] | None:
        """On a local miss: the entry and its object's path once a prefetch brought it in, or None if this
        get should be fetched on its own."""
        with self._cond:
            self._wait(lambda: not self._loading or action_id in self._expected)
            if action_id not in self._expected and self._asked < MAX_MANIFESTS and not self._stopped:
                self._asked += 1
                self._loading += 1
                self._start(self._run, action_id)
                self._wait(lambda: not self._loading or action_id in self._expected)
            if action_id not in self._expected:
                return None
            if self._await(action_id):
                return self._ready.get(action_id)
        if self.stop():  # the first of the gets that saw the stall: one failure, not one per get waiting
            self._strike(RemoteError(f"pack: under {MIN_RATE} bytes/s for {self.stall_s:g} s"))
        return None

    def _await(self, action_id: bytes) -> bool:
        """Under the lock: wait until action_id is settled, or the session stopped, or at most WAIT_MAX_S;
        False if the packs stalled meanwhile (brought less than MIN_RATE over a stall_s without news)."""
        deadline = time.monotonic() + WAIT_MAX_S
        mark = self._received()
        while action_id not in self._settled and not self._stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if not self._cond.wait(min(self.stall_s, left)):
                received = self._received()
                if received - mark < MIN_RATE * self.stall_s:
                    return False
                mark = received
        return True

    def _received(self) -> int:
        return sum(stream.bytes_read for stream in self._streams)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name="prefetch", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _wait(self, ready: Callable[[], bool]) -> None:
        """Under the lock: wait until ready(), or until nothing has happened for stall_s, or at most
        WAIT_MAX_S (an object far down a long stream is better fetched on its own)."""
        deadline = time.monotonic() + WAIT_MAX_S
        while not ready() and not self._stopped:
            left = deadline - time.monotonic()
            if left <= 0 or not self._cond.wait(min(self.stall_s, left)):
                return

    def stop(self) -> bool:
        """At the session's close, or on a stall or an open breaker: stop streaming (what is half written is
        dropped), release waiters. Whether it was streaming until now."""
        with self._cond:
            was, self._stopped = not self._stopped, True
            streams = list(self._streams)
            self._cond.notify_all()
        for stream in streams:
            stream.close()
        return was

    def finish(self, timeout: float) -> None:
        """After the session (the go command no longer waits): stop, and give the threads up to timeout
        seconds to end and to write the entries of what came."""
        self.stop()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._threads:
            writer = self._start_entry_writer()
            self._entries.put(None)
            writer.join(max(0.0, deadline - time.monotonic()))

    # -- the streaming thread
    def _run(self, action_id: bytes) -> None:
        by_output: dict[bytes, list[tuple[bytes, Entry]]] = {}
        try:
            try:
                manifest = self._vet(self._guarded(self.client.manifest, self.namespace, action_id))
            except Exception as e:  # breaker open, remote down: this get goes on its own
                self._failed(e)
                manifest = []
            try:
                by_output = self._plan(manifest)
            except Exception as e:  # the local store failing: every get goes on its own
                self._failed(e)
                self._give_up([a for a, _ in manifest])
        finally:
            with self._cond:
                self._loading -= 1
                self._cond.notify_all()
        if by_output:
            self._stream(by_output)
        self._start_entry_writer()

    def _plan(self, manifest: list[tuple[bytes, Entry]]) -> dict[bytes, list[tuple[bytes, Entry]]]:
        """Entries to stream in, by object (in manifest order); the ones whose object is here are written
        now. Marks them all expected."""
        store, namespace = self.store, self.namespace
        with self._cond:
            fresh = [(a, e) for a, e in manifest if a not in self._expected]
            self._expected.update(a for a, _ in fresh)
        by_output: dict[bytes, list[tuple[bytes, Entry]]] = {}
        here = []
        for action_id, entry in fresh:
            if (found := store.lookup(namespace, action_id)) is not None:
                self._settle([(action_id, found[0])], write=False)
            elif (group := by_output.get(entry.output_id)) is not None:
                group.append((action_id, entry))
            elif self._have(entry):
                here.append((action_id, entry))
            else:
                by_output[entry.output_id] = [(action_id, entry)]
        self._settle(here)
        return by_output

    def _have(self, entry: Entry) -> bool:
        try:
            return os.path.getsize(self.store.path(entry.output_id)) == entry.size
        except OSError:
            return False

    def _stream(self, by_output: dict[bytes, list[tuple[bytes, Entry]]]) -> None:
        """Read the pack; objects up to BUFFER_MAX go to the writer threads (creating a file costs the
        kernel more than receiving its bytes, and the threads overlap it), bigger ones are written here."""
        stream = None
        pool = _Writers(self)
        started, wanted = time.monotonic(), len(by_output)
        size = sum(group[0][1].size for group in by_output.values())
        try:
            try:
                stream = self._guarded(self.client.pack, list(by_output), size)
            except Exception as e:  # counted by the breaker already
                self._failed(e)
                return
            with self._cond:
                if self._stopped:
                    return
                self._streams.append(stream)
            while (head := stream.next()) is not None and not self._stopped:
                output_id, size = head
                group = by_output.pop(output_id, None)
                if group is None:
                    continue  # not asked for
                if size != group[0][1].size:  # absent (-1) or another size: those gets go on their own, now
                    self._give_up([a for a, _ in group])
                    continue
                if self._have(group[0][1]):
                    stream.skip()  # fetched on its own meanwhile
                    self._settle(group)
                elif size <= BUFFER_MAX:
                    pool.submit(output_id, group, stream.read_all())
                else:
                    self._store_object(output_id, group, stream.read_into)
        except RemoteError as e:  # a cut, malformed or too slow stream, a body that does not hash to its name
            if not self._stopped:
                self._strike(e)
        except Exception as e:  # the local store failing
            self._failed(e)
        finally:
            pool.finish()
            if stream is not None:
                stream.close()
                if os.environ.get("GOCAAS_CACHEPROG_DEBUG"):
                    took = time.monotonic() - started
                    mb = stream.bytes_read / 1e6
                    got = wanted - len(by_output)
                    sys.stderr.write(f"gocaas cacheprog: prefetched {got} of {wanted} objects, "
                                     f"{mb:.1f} MB in {took:.3f} s\n")  # fmt: skip
            # whatever did not come is settled too: its waiters fetch it on their own
            self._give_up([a for group in by_output.values() for a, _ in group])

    def write(self, output_id: bytes, group: list[tuple[bytes, Entry]], body: bytes) -> None:
        """On a writer thread (dropped once the session has stopped)."""
        if self._stopped:
            self._give_up([a for a, _ in group])
            return
        try:
            self._store_object(output_id, group, lambda writer: writer.write(body))
        except Exception as e:  # a body that does not hash to its name (RemoteError), a full disk
            (self._strike if isinstance(e, RemoteError) else self._failed)(e)
            self._give_up([a for a, _ in group])

    def _store_object(
        self, output_id: bytes, group: list[tuple[bytes, Entry]], fill: Callable[[ObjectWriter], None]
    ) -> None:
        """Write an object into the local store (fill writes its bytes; hashed, refused unless it hashes to
        output_id) and answer the gets of its actions."""
        writer = self.store.writer()
        try:
            fill(writer)
            if writer.digest() != output_id:
                raise RemoteError(f"pack: a body of {writer.size} bytes does not hash to {output_id.hex()}")
        except BaseException:
            writer.abort()
            raise
        self.store.commit_object(output_id, writer)
        self._count(prefetched=1, prefetch_bytes=writer.size, remote_bytes_down=writer.size)
        self._settle(group)

    def _give_up(self, action_ids: list[bytes]) -> None:
        with self._cond:
            self._settled.update(action_ids)
            self._cond.notify_all()

    def _settle(self, arrived: list[tuple[bytes, Entry]], *, write: bool = True) -> None:
        """These actions' objects are in the local store: answer their gets; queue their entries."""
        if not arrived:
            return
        with self._cond:
            for action_id, entry in arrived:
                self._ready[action_id] = (entry, self.store.path(entry.output_id))
                self._settled.add(action_id)
            self._cond.notify_all()
        if write:
            for item in arrived:
                self._entries.put(item)

    def _start_entry_writer(self) -> threading.Thread:
        """After a stream: writing entries (a new file each) while objects still stream in would take CPU
        from what the go command is waiting for."""
        with self._cond:
            if self._entry_writer is None:
                self._entry_writer = threading.Thread(target=self._write_entries, name="entries", daemon=True)
                self._entry_writer.start()
            return self._entry_writer

    def _write_entries(self) -> None:
        store, namespace = self.store, self.namespace
        while (item := self._entries.get()) is not None:
            action_id, entry = item
            try:
                store.put_entry(namespace, action_id, entry.output_id, entry.size, entry.time_ns)
            except Exception as e:  # a full disk: the next session asks the remote again
                self._failed(e)


class _Writers:
    """Threads writing the objects the stream reads (WRITERS of them), fed through a bounded queue."""

    def __init__(self, prefetcher: Prefetcher) -> None:
        self.prefetcher = prefetcher
        self._queue: Queue[tuple[bytes, list[tuple[bytes, Entry]], bytes] | None] = Queue(QUEUED_OBJECTS)
        self._threads: list[threading.Thread] = []

    def submit(self, output_id: bytes, group: list[tuple[bytes, Entry]], body: bytes) -> None:
        if len(self._threads) < WRITERS:
            thread = threading.Thread(target=self._loop, name="prefetch-writer", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._queue.put((output_id, group, body))

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            self.prefetcher.write(*item)

    def finish(self) -> None:
        """Wait for what is queued (dropped if the session has stopped) and end the threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
