"""A client of `gocaas cache serve` (server.py): the standard library's http.client over a small pool of
keep-alive connections. Also a `Backend` (get/put/has/open), so the tiers share contract tests.

Imported only when cacheprog runs with --remote, and then only at the first local miss or put: http.client
costs ~20 ms of start-up (it imports email and ssl), which a go command that hits locally never pays.

Errors: `RemoteError` when the remote failed or could not be reached (connection refused or reset, a
timeout, 5xx, 401, 429, a short or malformed answer), the signal a circuit breaker counts; `RemoteRefused`
(a subclass) when the remote refused one request (other 4xx), which says nothing about its health. A miss
is None, never an exception.
"""

from __future__ import annotations

import http.client
import io
import json
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, Protocol, TypeVar
from urllib.parse import urlsplit

from gocaas.cache.store import Entry

if TYPE_CHECKING:
    from gocaas.cache.packstream import PackStream

OCTET = "application/octet-stream"
MIN_RATE = 1 << 20  # bytes/s: a body arriving slower than this (after the timeout) is a failure
SMALL = 64 << 10  # bodies up to this are read whole
# What a remote may claim: an object past the server's own limit (gocaas cache serve takes up to 2 GiB),
# or a manifest past this, is refused before it fills the disk or memory.
MAX_OBJECT = 4 << 30
MAX_MANIFEST = 64 << 20
CHUNK = 1 << 20  # the most read or written at once
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Sink(Protocol):
    def write(self, data: bytes | memoryview) -> None: ...
    def abort(self) -> None: ...


W = TypeVar("W", bound=Sink)


class RemoteError(Exception):
    """The remote failed or is unreachable."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class RemoteRefused(RemoteError):
    """The remote refused this request (a 4xx other than 401/404/429): not a sign that it is down."""


class HTTPRemote:
    """`url` is http(s)://HOST[:PORT][/PREFIX]; `timeout` bounds connecting and each read of a get,
    `upload_timeout` those of uploads. Thread-safe: every request takes a pooled connection."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 2.0,
        upload_timeout: float = 30.0,
        pool_size: int = 4,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"remote URL must be http(s)://HOST[:PORT][/PREFIX], got {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}
        self.timeout, self.upload_timeout, self.pool_size = timeout, upload_timeout, pool_size
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self.requests = 0  # requests sent (attempts included)

    # -- what the remote tier uses
    def fetch(self, namespace: str, action_id: bytes, sink: Callable[[], W]) -> tuple[Entry, W] | None:
        """GET the action entry with its object inline; the body goes to `sink()`, a new ObjectWriter-like
        object (write, abort), returned with the entry. None on a miss."""
        path = f"/v1/{namespace}/ac/{action_id.hex()}"
        conn, resp = self._exchange("GET", path, headers={"Accept": OCTET}, timeout=self.timeout)
        writer = None
        try:
            if resp.status == 404:
                resp.read()
                self._release(conn, resp)
                return None
            self._check(resp, path)
            try:
                entry = Entry(
                    bytes.fromhex(resp.getheader("X-Gocaas-Output-Id") or ""),
                    int(resp.getheader("X-Gocaas-Size") or -1),
                    int(resp.getheader("X-Gocaas-Time-Ns") or 0),
                    bytes.fromhex(resp.getheader("X-Gocaas-Sig") or ""),
                )
            except ValueError:
                entry = None
            if entry is None or not entry.output_id or resp.length != entry.size:
                raise RemoteError(f"GET {path}: malformed answer (entry headers, Content-Length)")
            writer = sink()
            self._read_body(resp, writer, entry.size, path)
        except BaseException:
            conn.close()
            if writer is not None:
                writer.abort()
            raise
        self._release(conn, resp)
        return entry, writer

    def has(self, output_id: bytes) -> bool:
        path = f"/v1/cas/{output_id.hex()}"
        conn, resp = self._exchange("HEAD", path, timeout=self.upload_timeout)
        resp.read()
        if resp.status == 404:
            self._release(conn, resp)
            return False
        self._check(resp, path, conn)
        self._release(conn, resp)
        return True

    def put_object(self, output_id: bytes, body: BinaryIO | bytes, size: int) -> None:
        headers = {"Content-Type": OCTET, "Content-Length": str(size)}
        self._simple("PUT", f"/v1/cas/{output_id.hex()}", body, headers)

    def put_entry(self, namespace: str, action_id: bytes, entry: Entry) -> None:
        doc = {"output_id": entry.output_id.hex(), "size": entry.size, "time_ns": entry.time_ns}
        if entry.sig:
            doc["sig"] = entry.sig.hex()
        headers = {"Content-Type": "application/json"}
        self._simple("PUT", f"/v1/{namespace}/ac/{action_id.hex()}", json.dumps(doc).encode(), headers)

    # -- prefetching (traces.py on the server, prefetch.py here)
    def put_trace(self, namespace: str, action_ids: list[bytes], timeout: float | None = None) -> None:
        body = b"".join(a.hex().encode() + b"\n" for a in action_ids)
        self._simple("POST", f"/v1/{namespace}/traces", body, {"Content-Type": "text/plain"}, timeout)

    def manifest(self, namespace: str, action_id: bytes) -> list[tuple[bytes, Entry]]:
        """The entries of the newest trace holding action_id, in its order; [] if none holds it."""
        path = f"/v1/{namespace}/traces/{action_id.hex()}"
        conn, resp = self._exchange("GET", path, timeout=self.timeout)
        data = _read_limited(resp, MAX_MANIFEST, time.monotonic() + self.timeout + MAX_MANIFEST / MIN_RATE)
        if data is None:
            conn.close()
            raise RemoteError(f"GET {path}: manifest over {MAX_MANIFEST} bytes, or too slow")
        if resp.status == 404:
            self._release(conn, resp)
            return []
        self._check(resp, path, conn, data)
        self._release(conn, resp)
        try:
            found = []
            for line in data.splitlines():
                aid, oid, size, time_ns, *sig = line.split()  # a signature when the entry has one
                if len(sig) > 1:
                    raise ValueError(f"{len(sig) + 4} fields in {line[:300]!r}")
                entry = Entry(
                    bytes.fromhex(oid.decode()),
                    int(size),
                    int(time_ns),
                    bytes.fromhex(b"".join(sig).decode()),
                )
                found.append((bytes.fromhex(aid.decode()), entry))
        except ValueError as e:
            raise RemoteError(f"GET {path}: malformed manifest: {e}") from None
        return found

    def pack(self, output_ids: list[bytes], size: int | None = None) -> PackStream:
        """Ask for many objects in one answer (POST /v1/cas/pack); read them from the PackStream in turn.
        `size`, the bytes expected, sets the stream's deadline (the timeout, plus size at MIN_RATE); without
        it, only each read's timeout applies."""
        body = b"".join(o.hex().encode() + b"\n" for o in output_ids)
        deadline = math.inf if size is None else time.monotonic() + self.timeout + size / MIN_RATE
        conn, resp = self._exchange("POST", "/v1/cas/pack", body=body, headers={"Content-Type": "text/plain"},
                                    timeout=self.timeout)  # fmt: skip
        try:
            self._check(resp, "/v1/cas/pack", conn)
        except BaseException:
            conn.close()
            raise
        from gocaas.cache.packstream import PackStream  # it imports this module's errors and limits

        return PackStream(resp, conn, deadline)

    # -- Backend
    def get(self, namespace: str, action_id: bytes) -> Entry | None:
        path = f"/v1/{namespace}/ac/{action_id.hex()}"
        conn, resp = self._exchange("GET", path, timeout=self.timeout)
        data = resp.read()
        if resp.status == 404:
            self._release(conn, resp)
            return None
        self._check(resp, path, conn, data)
        self._release(conn, resp)
        try:
            doc = json.loads(data)
            sig = bytes.fromhex(doc.get("sig", ""))
            return Entry(bytes.fromhex(doc["output_id"]), doc["size"], doc["time_ns"], sig)
        except (ValueError, KeyError, TypeError) as e:
            raise RemoteError(f"GET {path}: malformed entry: {e}") from None

    def put(self, namespace: str, action_id: bytes, output_id: bytes, body: bytes | BinaryIO) -> Entry:
        data = body if isinstance(body, bytes) else body.read()
        self.put_object(output_id, data, len(data))
        entry = Entry(output_id, len(data), time.time_ns())
        self.put_entry(namespace, action_id, entry)
        return entry

    def open(self, output_id: bytes) -> BinaryIO | None:
        path = f"/v1/cas/{output_id.hex()}"
        conn, resp = self._exchange("GET", path, timeout=self.upload_timeout)
        if resp.status == 404:
            resp.read()
            self._release(conn, resp)
            return None
        self._check(resp, path, conn)
        return _Download(resp, conn)  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- plumbing
    def _simple(
        self,
        method: str,
        path: str,
        body: BinaryIO | bytes,
        headers: dict[str, str],
        timeout: float | None = None,
    ) -> None:
        wait = self.upload_timeout if timeout is None else timeout
        conn, resp = self._exchange(method, path, body=body, headers=headers, timeout=wait)
        data = resp.read()
        self._check(resp, path, conn, data)
        self._release(conn, resp)

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        body: BinaryIO | bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request and read the response's head, on a pooled connection. A reused connection that
        the server had closed meanwhile (keep-alive timeout, restart) is retried once on a new one."""
        all_headers = {**self._auth, **(headers or {})}
        for attempt in (0, 1):
            conn, reused = self._acquire(timeout)
            try:
                conn.request(method, self._prefix + path, body=body, headers=all_headers)
                return conn, conn.getresponse()
            except _STALE as e:
                conn.close()
                if not (reused and attempt == 0 and _rewind(body)):
                    raise RemoteError(f"{method} {path}: {type(e).__name__}: {e}") from None
            except (OSError, http.client.HTTPException) as e:  # refused, timed out, unreachable, garbled
                conn.close()
                raise RemoteError(f"{method} {path}: {type(e).__name__}: {e}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _acquire(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
            self.requests += 1
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            return cls(self._host, self._port, timeout=timeout, blocksize=CHUNK), False
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        conn.timeout = timeout
        return conn, True

    def _release(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        if resp.will_close:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _check(
        self,
        resp: http.client.HTTPResponse,
        path: str,
        conn: http.client.HTTPConnection | None = None,
        data: bytes | None = None,
    ) -> None:
        if 200 <= resp.status < 300:
            return
        if data is None:
            data = resp.read(4096) if (resp.length or 0) <= 4096 else b""
        if conn is not None:
            conn.close()
        try:
            message = json.loads(data)["error"]
        except (ValueError, KeyError, TypeError):
            message = data[:200].decode(errors="replace") or resp.reason
        text = f"{resp._method} {path}: {resp.status} {message}"  # type: ignore[attr-defined]
        if 400 <= resp.status < 500 and resp.status not in (401, 408, 429):
            raise RemoteRefused(text, resp.status)
        raise RemoteError(text, resp.status)

    def _read_body(self, resp: http.client.HTTPResponse, writer: Sink, size: int, path: str) -> None:
        write = writer.write
        if size > MAX_OBJECT:
            raise RemoteError(f"GET {path}: an object of {size} bytes (over {MAX_OBJECT})")
        deadline = time.monotonic() + self.timeout + size / MIN_RATE
        if size <= SMALL:
            data = _read_limited(resp, size, deadline)  # a drip would otherwise pass every read's timeout
            if data is None or len(data) != size:
                raise RemoteError(f"GET {path}: body not {size} bytes, or too slow")
            write(data)
            return
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = memoryview(bytearray(CHUNK))
        got = 0
        while got < size:
            n = resp.readinto(buf[: min(CHUNK, size - got)])
            if not n:
                raise RemoteError(f"GET {path}: body ended after {got} of {size} bytes")
            write(buf[:n])
            got += n
            if time.monotonic() > deadline:
                raise RemoteError(f"GET {path}: too slow ({got} of {size} bytes)")


def _read_limited(resp: http.client.HTTPResponse, limit: int, deadline: float) -> bytes | None:
    """The body, or None if it is longer than limit or still coming at the deadline."""
    parts: list[bytes] = []
    got = 0
    while chunk := resp.read1(min(CHUNK, limit + 1 - got)):
        parts.append(chunk)
        got += len(chunk)
        if got > limit or time.monotonic() > deadline:
            return None
    resp.read()  # nothing is left; this marks the response done, so that its connection can be reused
    return b"".join(parts)


def _rewind(body: BinaryIO | bytes | None) -> bool:
    if body is None or isinstance(body, bytes):
        return True
    try:
        body.seek(0)
    except (OSError, AttributeError):
        return False
    return True


class _Download(io.RawIOBase):
    """An object's body as it arrives (Backend.open); closing it closes its connection."""

    def __init__(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection) -> None:
        self._resp, self._conn = resp, conn

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._resp.readinto(b)

    def close(self) -> None:
        if not self.closed:
            self._conn.close()
        super().close()
