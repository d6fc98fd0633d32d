"""The answer to a pack request (`HTTPRemote.pack`, POST /v1/cas/pack): many objects in one response, read
in turn as they arrive. How a fresh worker prefetches a manifest (prefetch.py)."""

from __future__ import annotations

import http.client
import math
import time

from gocaas.cache.client import CHUNK, MAX_OBJECT, RemoteError, Sink


class PackStream:
    """The answer to a pack request: `next()` gives (output_id, size) of the next object (size -1: the remote
    lacks it) or None at the end; then `read_into(sink)` or `skip()` consumes its bytes.

    Bytes are read as they arrive (one recv at a time), so `bytes_read` shows progress to other threads, and
    a read fails past the deadline or once `close()` was called: a pack dripping just faster than the socket
    timeout would otherwise never end."""

    def __init__(
        self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, deadline: float = math.inf
    ) -> None:
        self._resp, self._conn, self._deadline = resp, conn, deadline
        self._left = 0
        self._closed = False
        self.bytes_read = 0

    def next(self) -> tuple[bytes, int] | None:
        if self._left:
            self.skip()
        self._check_time()
        line = self._resp.readline(200)
        if not line:
            return None
        try:
            oid, size = line.split()
            found = bytes.fromhex(oid.decode()), int(size)
        except ValueError:
            raise RemoteError(f"pack: malformed object header {line[:100]!r}") from None
        if found[1] > MAX_OBJECT:
            raise RemoteError(f"pack: an object of {found[1]} bytes (over {MAX_OBJECT})")
        self._left = max(0, found[1])
        return found

    def read_into(self, sink: Sink) -> None:
        while self._left:
            sink.write(self._read())

    def read_all(self) -> bytes:
        """The whole of the current object."""
        parts = []
        while self._left:
            parts.append(self._read())
        return b"".join(parts)  # one part (the usual case) is returned as it is

    def skip(self) -> None:
        self.read_into(_Discard())

    def close(self) -> None:
        self._closed = True
        self._conn.close()

    def _read(self) -> bytes:
        self._check_time()
        chunk = self._resp.read1(min(self._left, CHUNK))
        if not chunk:
            raise RemoteError(f"pack: the answer ended {self._left} bytes into an object")
        self._left -= len(chunk)
        self.bytes_read += len(chunk)
        return chunk

    def _check_time(self) -> None:
        if self._closed:
            raise RemoteError("pack: closed")
        if time.monotonic() > self._deadline:
            raise RemoteError(f"pack: too slow ({self.bytes_read} bytes by the deadline)")


class _Discard:
    def write(self, data: bytes | memoryview) -> None:
        pass

    def abort(self) -> None:
        pass
