"""cacheprog's remote tier: a `gocaas cache serve` behind the local store, read through and written behind.

- `fetch(action_id)` on a local miss: one GET (the entry with its object inline), streamed into the local
  store through its writer, hashed, committed with the remote's put time; the local path is what the go
  command gets, and the next get of it is a local hit. When the local store is read-only, the object goes to
  a private temp directory instead, removed at exit: nothing in either store is written.
- `upload(action_id, entry)` after a local put: queued (bounded; full → dropped) for one background thread
  that HEADs the object (for objects over HEAD_MIN; smaller ones are simply sent), PUTs it unless the remote
  has it, then PUTs the entry. `close()` waits for the queue up to a deadline; what is left is dropped.
- A circuit breaker (pybreaker) guards every request: after `fail_max` failures in a row (connection
  refused or reset, a timeout, 5xx, 401, a body that does not hash to its name, a stalled pack) it opens,
  and for `reset_timeout` seconds gets are misses and uploads are dropped without asking the remote; then
  one trial request decides. When it opens, it stops the session's prefetching, and the time is written
  next to the local store (remote-<hash>.down): later cacheprog processes start open until reset_timeout
  has passed since, so that a build's many go commands do not each wait for a dead remote.
  Nothing here raises into the GOCACHEPROG server: a remote failure is a miss, or an upload not made.
- Signed entries (signing.py): with a signer, every uploaded entry carries its signature; with a verifier,
  an entry from the remote (alone or in a prefetch manifest) is taken only if one of its keys signed it:
  unsigned is a miss (`remote_unsigned`), a bad signature a failure of the remote (`remote_bad_signatures`)
  that opens the breaker at once.
"""

# str paths and os calls, as in store.py
# ruff: noqa: PTH103, PTH118, PTH204
from __future__ import annotations

import contextlib
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gocaas.cache.client import HTTPRemote, RemoteError, RemoteRefused
from gocaas.cache.files import ObjectWriter, mktemp, place, unlink, write_all
from gocaas.cache.lazyremote import import_site
from gocaas.cache.stats import REMOTE_COUNTERS
from gocaas.cache.store import CacheError, Entry, Store

if TYPE_CHECKING:
    from gocaas.cache.prefetch import Prefetcher
    from gocaas.cache.signing import EntrySigner, EntryVerifier

T = TypeVar("T")
ENTRY_FLUSH_S = 30.0  # after the session, how long the prefetched entries may take to be written
HEAD_MIN = 64 << 10  # objects up to this are PUT without asking first: a HEAD costs as much
TRACE_MIN_S = 1.0  # the least the trace may take at close, even when the uploads used the whole flush time


class RemoteTier:
    def __init__(
        self,
        store: Store,
        namespace: str,
        client: HTTPRemote,
        *,
        upload: bool = True,
        prefetch: bool = True,
        fail_max: int = 3,
        reset_timeout: float = 30.0,
        queue_size: int = 10_000,
        signer: EntrySigner | None = None,
        verifier: EntryVerifier | None = None,
    ) -> None:
        self.store, self.namespace, self.client = store, namespace, client
        self.signer, self.verifier = signer, verifier
        self.upload_enabled = upload and not store.read_only
        self.counts = dict.fromkeys(REMOTE_COUNTERS, 0)
        self._lock = threading.Lock()
        self._fill_dir: str | None = None  # for a read-only local store
        self._queue: queue.Queue[tuple[bytes, Entry] | None] = queue.Queue(queue_size)
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._uploader: threading.Thread | None = None
        self._down_file = self._down_path()
        self.prefetcher: Prefetcher | None = None
        pybreaker = import_site("pybreaker")
        self._breaker_error = pybreaker.CircuitBreakerError
        storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        down_since = self._down_since(reset_timeout)
        if down_since is not None:
            from datetime import UTC, datetime

            storage.state = pybreaker.STATE_OPEN
            storage.opened_at = datetime.fromtimestamp(down_since, UTC)
        self._breaker_listener = _listener(pybreaker, self)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=[RemoteRefused],
            listeners=[self._breaker_listener],
            state_storage=storage,
            throw_new_error_on_trip=False,  # raise the failure: CircuitBreakerError means "not tried"
        )
        if prefetch and not store.read_only:
            from gocaas.cache.prefetch import Prefetcher

            self.prefetcher = Prefetcher(
                store, namespace, client, guarded=self._guarded, failed=self._failed, strike=self._strike,
                count=self._count, stall_s=client.timeout, vet=self._vet_manifest,
            )  # fmt: skip

    # -- reads
    def fetch(self, action_id: bytes) -> tuple[Entry, str] | None:
        """The entry and the local path of its object from the remote, or None (a miss, or a failure)."""
        prefetcher = self.prefetcher
        if prefetcher is not None and self._breaker.current_state != "open":
            found = prefetcher.fetch(action_id)
            if found is not None:
                self._count(remote_hits=1, prefetch_hits=1)
                return found
        try:
            got = self._guarded(self._fetch_checked, action_id)
        except self._breaker_error:
            self._count(remote_skipped=1)
            return None
        except Exception as e:  # RemoteError, or a local problem with the store
            self._failed(e)
            return None
        if got is None:
            self._count(remote_misses=1)
            return None
        entry, writer = got
        try:
            path = self._place(action_id, entry, writer)
        except (CacheError, OSError) as e:  # the local store failing (a full disk)
            self._failed(e)
            return None
        self._count(remote_hits=1, remote_bytes_down=entry.size)
        return entry, path

    def _fetch_checked(self, action_id: bytes) -> tuple[Entry, ObjectWriter] | None:
        """The remote's answer, its body hashed: one that does not hash to its name is the remote's failure,
        for the breaker to count (else a remote serving bad bodies has every get download and drop one)."""
        got = self.client.fetch(self.namespace, action_id, self._writer)
        if got is not None and got[1].digest() != got[0].output_id:
            got[1].abort()
            raise RemoteError(f"GET {action_id.hex()}: body does not hash to {got[0].output_id.hex()}")
        if got is not None and not self._vouched(action_id, got[0]):
            got[1].abort()
            return None
        return got

    def _vouched(self, action_id: bytes, entry: Entry) -> bool:
        """Whether to take this entry from the remote: always without a verifier; else only if signed by one
        of its keys. A bad signature raises RemoteError (the remote's failure, for the breaker)."""
        if self.verifier is None:
            return True
        verdict = self.verifier.check(self.namespace, action_id, entry.output_id, entry.size, entry.sig)
        if verdict == "unsigned":
            self._count(remote_unsigned=1)
            return False
        if verdict == "bad":
            self._count(remote_bad_signatures=1)
            error = RemoteError(f"entry for action {action_id.hex()}: bad signature")
            self._distrust(error)
            raise error
        return True

    def _distrust(self, error: RemoteError) -> None:
        """Open the breaker now: a forged or mis-signed entry is no accident, and counting it as one failure
        in a row lets every upload that succeeds in between reset the count (seen: 2,746 bad signatures in
        one go command and the breaker never opened)."""
        self._breaker_listener.last_error = error
        self._breaker.open()

    def _vet_manifest(self, manifest: list[tuple[bytes, Entry]]) -> list[tuple[bytes, Entry]]:
        """The manifest's entries _vouched() for; the first bad signature is one strike on the breaker."""
        if self.verifier is None:
            return manifest
        kept, bad = [], None
        for action_id, entry in manifest:
            try:
                if self._vouched(action_id, entry):
                    kept.append((action_id, entry))
            except RemoteError as e:
                bad = bad or e
        if bad is not None:
            self._strike(bad)
        return kept

    def _writer(self) -> ObjectWriter:
        if not self.store.read_only:
            return self.store.writer()
        with self._lock:
            if self._fill_dir is None:
                self._fill_dir = tempfile.mkdtemp(prefix="gocaas-cacheprog-")
        return ObjectWriter(*mktemp(self._fill_dir, "tmp-"))

    def _place(self, action_id: bytes, entry: Entry, writer: ObjectWriter) -> str:
        if not self.store.read_only:
            self.store.commit(self.namespace, action_id, entry.output_id, writer, time_ns=entry.time_ns)
            return self.store.path(entry.output_id)
        writer.close()  # hashed in _fetch_checked
        path = os.path.join(self._fill_dir or "", entry.output_id.hex())
        place(writer.path, path)
        return path

    # -- writes
    def upload(self, action_id: bytes, entry: Entry) -> None:
        """Queue an upload of a local put; never blocks (a full queue drops it)."""
        if not self.upload_enabled:
            return
        with self._lock:
            if self._uploader is None:
                self._uploader = threading.Thread(target=self._upload_loop, name="upload", daemon=True)
                self._uploader.start()
            self._pending += 1
        try:
            self._queue.put_nowait((action_id, entry))
        except queue.Full:
            self._done(dropped=1)

    def _upload_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            dropped = 1
            try:
                if self.upload_enabled:
                    self._upload_one(*item)
                    dropped = 0
            except self._breaker_error:
                pass
            except RemoteRefused as e:
                if e.status in (403, 405):  # a read-only server, token or namespace: stop asking
                    self.upload_enabled = False
                else:
                    self._failed(e)
            except Exception as e:
                self._failed(e)
            self._done(dropped=dropped)

    def _upload_one(self, action_id: bytes, entry: Entry) -> None:
        oid, size = entry.output_id, entry.size
        if size > HEAD_MIN and self._guarded(self.client.has, oid):
            self._count(upload_skipped=1)
        else:
            body = self.store.open(oid)
            if body is None:  # evicted since: nothing to send
                raise CacheError(f"object {oid.hex()} is gone from the local store")
            with body:
                self._guarded(self.client.put_object, oid, body, size)
            self._count(remote_bytes_up=size)
        if self.signer is not None:
            sig = self.signer.sign(self.namespace, action_id, oid, size)
            entry = Entry(oid, size, entry.time_ns, sig)
        self._guarded(self.client.put_entry, self.namespace, action_id, entry)
        self._count(uploads=1)

    def _done(self, dropped: int) -> None:
        with self._lock:
            self._pending -= 1
            self.counts["upload_dropped"] += dropped
            self._idle.notify_all()

    def close(self, timeout: float, trace: list[bytes] | None = None) -> None:
        """Stop prefetching; wait up to timeout seconds for queued uploads, drop the rest; send the session's
        trace (the actions it used, in order) unless a prefetch showed the server has it. Then release the
        connections."""
        if self.prefetcher is not None:
            self.prefetcher.stop()
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            # Uploads still pending at the deadline: a remote this slow would hold the trace for its whole
            # upload timeout as well (30 s past a 5 s flush, measured), so it goes without one.
            drained = not self._pending
            send_trace = self.upload_enabled and bool(trace) and self.prefetcher is not None and drained
            self.upload_enabled = False  # the uploader drops what is left
        if self._uploader is not None:
            self._queue.put(None)
        if send_trace and trace and self.prefetcher is not None and not self.prefetcher.covered(trace):
            self._send_trace(trace, max(TRACE_MIN_S, deadline - time.monotonic()))
        self.client.close()

    def _send_trace(self, trace: list[bytes], timeout: float) -> None:
        try:
            self._guarded(self.client.put_trace, self.namespace, trace, timeout)
            self._count(traces_sent=1)
        except self._breaker_error:
            pass
        except RemoteRefused as e:
            if e.status not in (403, 405):  # a read-only token or namespace, or an older server
                self._failed(e)
        except Exception as e:
            self._failed(e)

    def cleanup(self) -> None:
        """After the session (the go command is done with the paths): let the prefetch stream stop, remove
        the private fill directory."""
        if self.prefetcher is not None:
            self.prefetcher.finish(ENTRY_FLUSH_S)
        if self._fill_dir is not None:
            shutil.rmtree(self._fill_dir, ignore_errors=True)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {**self.counts, "remote_requests": self.client.requests}

    # -- the breaker
    def _guarded(self, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) through the breaker. pybreaker's call() holds the breaker's lock for the whole call
        (one request at a time: danielfm/pybreaker#3); given a generator, call() only checks the state under
        the lock (raising CircuitBreakerError when open) and records the outcome when the generator ends, so
        the request itself runs outside the lock, concurrently with others."""

        def attempt() -> Any:
            yield fn(*args)

        gen = self._breaker.call(attempt)
        result = next(gen)
        for _ in gen:  # ends the generator: the success is recorded
            pass
        return result  # type: ignore[no-any-return]

    def _strike(self, error: BaseException) -> None:
        """A failure of the remote seen after its request succeeded (a pack's body, a stall): counted, and
        recorded on the breaker as the failure of a request."""

        def fail() -> None:
            raise error

        self._failed(error)
        with contextlib.suppress(Exception):  # the error itself, or CircuitBreakerError if open already
            self._guarded(fail)

    def _failed(self, error: BaseException) -> None:
        self._count(remote_errors=1)
        if os.environ.get("GOCAAS_CACHEPROG_DEBUG"):
            sys.stderr.write(f"gocaas cacheprog: remote: {type(error).__name__}: {error}\n")

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self.counts[name] += delta

    def _down_path(self) -> str | None:
        if self.store.read_only:
            return None
        from zlib import crc32

        return os.path.join(self.store.root, f"remote-{crc32(self.client.url.encode()):08x}.down")

    def _down_since(self, reset_timeout: float) -> float | None:
        if self._down_file is None:
            return None
        try:
            since = os.path.getmtime(self._down_file)
        except OSError:
            return None
        return since if time.time() - since < reset_timeout else None

    def opened(self, error: BaseException | None) -> None:
        self._count(breaker_opens=1)
        if self.prefetcher is not None:
            self.prefetcher.stop()
        why = f" ({type(error).__name__}: {error})" if error else ""
        sys.stderr.write(
            f"gocaas cacheprog: remote cache {self.client.url} unavailable{why}; using the local cache only "
            f"for {self._breaker.reset_timeout:g} s\n"
        )
        if self._down_file is not None:
            try:
                os.makedirs(self.store.root, exist_ok=True)
                fd = os.open(self._down_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    write_all(fd, f"{self.client.url}\n".encode())
                finally:
                    os.close(fd)
            except OSError:
                pass

    def closed(self) -> None:
        if self._down_file is not None:
            unlink(self._down_file)


def _listener(pybreaker: Any, tier: RemoteTier) -> Any:
    class Listener(pybreaker.CircuitBreakerListener):  # type: ignore[misc, name-defined]
        last_error: BaseException | None = None

        def failure(self, cb: object, exc: BaseException) -> None:
            self.last_error = exc

        def state_change(self, cb: object, old: Any, new: Any) -> None:
            # requests in flight when it opened may fail and "open" it again: count the first
            if new.name == pybreaker.STATE_OPEN and getattr(old, "name", None) != pybreaker.STATE_OPEN:
                tier.opened(self.last_error)
            elif new.name == pybreaker.STATE_CLOSED and old is not None:
                tier.closed()

    return Listener()
