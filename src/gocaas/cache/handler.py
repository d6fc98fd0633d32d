"""The request handler of `gocaas cache serve` (the routes and their rules are in server.py's docstring)."""

# ruff: noqa: PTH202
from __future__ import annotations

import hmac
import json
import os
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

from gocaas.cache.store import CacheError, check_namespace
from gocaas.cache.traces import TraceError, parse_ids

if TYPE_CHECKING:
    from gocaas.cache.server import CacheHTTPServer

INLINE_MAX = 64 << 10  # bodies up to this are read and written; bigger ones go by sendfile
IDLE_TIMEOUT_S = 300  # a keep-alive connection idle this long is closed
DRAIN_MAX = 1 << 20  # a refused PUT body up to this is read and dropped (keeps the connection); else closed
_HEX = frozenset("0123456789abcdef")
_CHUNK = 1 << 20
MAX_TRACE_BODY = 16 << 20  # ~250,000 keys
MAX_SIG_BYTES = 64  # an entry's signature (Ed25519's size, signing.py); checked only with verify keys
MAX_PACK_OBJECTS = 100_000
MAX_PACK_BODY = MAX_PACK_OBJECTS * 130


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_key(text: str, field: str) -> bytes:
    """A key in lowercase hex (2-128 digits, as the store's keys are 1-64 bytes)."""
    if not 2 <= len(text) <= 128 or len(text) % 2 or not _HEX.issuperset(text):
        raise HTTPError(400, f"bad {field}: want 2-128 lowercase hex digits, got {text[:140]!r}")
    return bytes.fromhex(text)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CacheHTTPServer
    server_version = "gocaas-cache/1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.settimeout(IDLE_TIMEOUT_S)

    def log_message(self, format: str, *args: object) -> None:
        pass  # no access log: a build makes thousands of requests

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        self.server.count(requests=1)
        self._unread = method in ("PUT", "POST")  # a body to read (or drop) before the next request
        try:
            try:
                self._route(method)
            except HTTPError as e:
                self._refuse(e.status, str(e))
            except (ConnectionError, TimeoutError):
                raise
            except Exception as e:  # a bug or a broken disk: 500, and the client's breaker decides
                self.server.count(errors=1)
                self._refuse(500, f"{type(e).__name__}: {e}")
        except (ConnectionError, TimeoutError):  # the client went away, perhaps while we refused it
            self.close_connection = True

    def _route(self, method: str) -> None:
        path = self.path.partition("?")[0]
        if path == "/healthz":
            return self._send(200, b"ok\n", "text/plain")
        if path == "/metrics" and method == "GET":
            from gocaas.cache.server_metrics import exposition

            self._authorize()
            return self._send(200, *exposition(self.server))
        parts = path.split("/")
        if len(parts) < 3 or parts[1] != "v1":
            raise HTTPError(404, f"no such path {path[:200]!r}")
        writable = self._authorize()
        if len(parts) == 3 and parts[2] == "status" and method == "GET":
            with self.server.lock:
                counters = dict(self.server.counters)
            return self._json(200, counters)
        if method == "POST" and len(parts) == 4 and parts[3] == "traces":
            return self._put_trace(self._namespace(parts[2]), writable)
        if method == "POST" and parts[2:] == ["cas", "pack"]:
            return self._get_pack()
        if method == "POST":
            raise HTTPError(405, f"POST is not allowed on {path[:200]!r}")
        if len(parts) == 5 and parts[3] == "traces" and method == "GET":
            return self._get_manifest(self._namespace(parts[2]), parse_key(parts[4], "action_id"))
        if len(parts) == 4 and parts[2] == "cas":
            output_id = parse_key(parts[3], "output_id")
            return self._put_object(output_id, writable) if method == "PUT" else self._get_object(output_id)
        if len(parts) == 5 and parts[3] == "ac":
            namespace = self._namespace(parts[2])
            action_id = parse_key(parts[4], "action_id")
            if method == "PUT":
                return self._put_entry(namespace, action_id, writable)
            return self._get_entry(namespace, action_id)
        raise HTTPError(404, f"no such path {path[:200]!r}")

    @staticmethod
    def _namespace(text: str) -> str:
        try:
            return check_namespace(text)
        except CacheError as e:
            raise HTTPError(400, str(e)) from None

    def _authorize(self) -> bool:
        """Whether the request's token may write; 401 unless it is one of ours (constant-time compare)."""
        got = (self.headers.get("Authorization") or "").encode()
        found = None
        for expected, writable in self.server.tokens:  # compare with every token: no early exit
            if hmac.compare_digest(got, expected):
                found = writable
        if found is None:
            raise HTTPError(401, "missing or wrong bearer token")
        return found

    # -- objects
    def _get_object(self, output_id: bytes) -> None:
        path = self.server.store.path(output_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise HTTPError(404, f"no object {output_id.hex()}") from None
        try:
            self.server.count(cas_gets=1)
            self._send_file(fd, {})
        finally:
            os.close(fd)

    def _put_object(self, output_id: bytes, writable: bool) -> None:
        self._check_writable(writable)
        size = self._content_length()
        store = self.server.store
        writer = store.writer()
        self._unread = False
        try:
            left = size
            while left:
                chunk = self.rfile.read(min(left, _CHUNK))
                if not chunk:
                    raise ConnectionError("client went away in the middle of a body")
                writer.write(chunk)
                left -= len(chunk)
        except BaseException:
            writer.abort()
            raise
        self.server.count(bytes_in=size)
        try:
            store.commit_object(output_id, writer)
        except CacheError as e:
            raise HTTPError(400, f"bad body for output_id: {e}") from None
        self.server.count(puts=1)
        self.server.maybe_gc()
        self._json(201, {"output_id": output_id.hex(), "size": size})

    # -- action entries
    def _get_entry(self, namespace: str, action_id: bytes) -> None:
        found = self.server.store.lookup(namespace, action_id)
        if found is None:
            self.server.count(namespace, ac_misses=1)
            raise HTTPError(404, f"no entry for action {action_id.hex()} in {namespace}")
        entry, path = found
        self.server.count(namespace, ac_hits=1)
        headers = {
            "X-Gocaas-Output-Id": entry.output_id.hex(),
            "X-Gocaas-Size": str(entry.size),
            "X-Gocaas-Time-Ns": str(entry.time_ns),
        }
        if entry.sig:
            headers["X-Gocaas-Sig"] = entry.sig.hex()
        if "application/octet-stream" in (self.headers.get("Accept") or ""):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # a gc took it since the lookup
                raise HTTPError(404, f"no object for action {action_id.hex()}") from None
            try:
                return self._send_file(fd, headers)
            finally:
                os.close(fd)
        body = {"output_id": entry.output_id.hex(), "size": entry.size, "time_ns": entry.time_ns}
        if entry.sig:
            body["sig"] = entry.sig.hex()
        self._json(200, body, headers)

    def _put_entry(self, namespace: str, action_id: bytes, writable: bool) -> None:
        self._check_writable(writable, namespace)
        size = self._content_length(limit=4096)
        self._unread = False
        try:
            doc = json.loads(self.rfile.read(size))
            if not isinstance(doc, dict):
                raise HTTPError(
                    400, f'bad entry: want a JSON object {{"output_id", "size"}}, not {type(doc).__name__}'
                )
            output_id = parse_key(doc["output_id"], "output_id")
            osize, time_ns = doc["size"], doc.get("time_ns")
            if type(osize) is not int or osize < 0:
                raise HTTPError(400, "bad size: want a non-negative integer")
            if time_ns is not None and (type(time_ns) is not int or time_ns < 0):
                raise HTTPError(400, "bad time_ns: want a non-negative integer")
            sig = doc.get("sig") or ""
            if type(sig) is not str or len(sig) > 2 * MAX_SIG_BYTES:
                raise HTTPError(400, f"bad sig: want at most {2 * MAX_SIG_BYTES} hex digits")
            signature = bytes.fromhex(sig)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise HTTPError(400, f'bad entry: want JSON {{"output_id", "size"}}: {e}') from None
        store = self.server.store
        try:
            present = os.path.getsize(store.path(output_id))
        except FileNotFoundError:
            present = None
        if present != osize:
            what = "absent" if present is None else f"{present} bytes, not {osize}"
            raise HTTPError(409, f"object {output_id.hex()} is {what}: PUT /v1/cas/{output_id.hex()} first")
        verifier = self.server.verifier
        if verifier is not None:
            verdict = verifier.check(namespace, action_id, output_id, osize, signature)
            if verdict != "ok":
                raise HTTPError(403, f"entry not signed by a key this server trusts ({verdict})")
        now = time.time_ns()
        store.put_entry(namespace, action_id, output_id, osize, min(time_ns or now, now), signature)
        self.server.count(namespace, puts=1)
        self._json(201, {"output_id": output_id.hex(), "size": osize})

    # -- traces and packs (traces.py, prefetch.py)
    def _put_trace(self, namespace: str, writable: bool) -> None:
        self._check_writable(writable, namespace)
        size = self._content_length(limit=MAX_TRACE_BODY)
        self._unread = False
        body = self.rfile.read(size)
        try:
            name = self.server.traces.add(namespace, parse_ids(body))
        except TraceError as e:
            raise HTTPError(400, f"bad trace: {e}") from None
        self._json(201, {"trace": name})

    def _get_manifest(self, namespace: str, action_id: bytes) -> None:
        found = self.server.traces.manifest(namespace, action_id)
        if not found:
            raise HTTPError(404, f"no trace holds action {action_id.hex()} in {namespace}")
        lines = [
            f"{a.hex()} {e.output_id.hex()} {e.size} {e.time_ns} {e.sig.hex()}".rstrip() + "\n"
            for a, e in found
        ]
        self.server.count(manifests=1)
        self._send(200, "".join(lines).encode(), "text/plain")

    def _get_pack(self) -> None:
        """The objects asked for, in the order asked: for each a line "<output hex> <size>" and its bytes
        ("<output hex> -1" and nothing for one the store lacks). The end of the body is the connection's end:
        the sizes are known only as the files are opened."""
        size = self._content_length(limit=MAX_PACK_BODY)
        self._unread = False
        try:
            wanted = parse_ids(self.rfile.read(size), limit=MAX_PACK_OBJECTS)
        except TraceError as e:
            raise HTTPError(400, f"bad pack request: {e}") from None
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        store, pending, sent = self.server.store, bytearray(), 0
        for output_id in wanted:
            try:
                fd = os.open(store.path(output_id), os.O_RDONLY)
            except FileNotFoundError:
                pending += f"{output_id.hex()} -1\n".encode()
                continue
            try:
                length = os.fstat(fd).st_size
                pending += f"{output_id.hex()} {length}\n".encode()
                if length <= INLINE_MAX:
                    pending += os.read(fd, length)
                else:  # flush what is pending, then let the kernel copy the file
                    self.wfile.write(pending)
                    sent, pending = sent + len(pending), bytearray()
                    with os.fdopen(os.dup(fd), "rb") as f:
                        copied = self.connection.sendfile(f, 0, length)
                    sent += copied
                    if copied != length:  # the file shrank under us: the client sees a short body
                        raise ConnectionError(f"sent {copied} of {length} bytes of {output_id.hex()}")
            finally:
                os.close(fd)
            if len(pending) >= _CHUNK:
                self.wfile.write(pending)
                sent, pending = sent + len(pending), bytearray()
        self.wfile.write(pending)
        self.server.count(packs=1, bytes_out=sent + len(pending))

    # -- helpers
    def _check_writable(self, writable: bool, namespace: str | None = None) -> None:
        if self.server.store.read_only:
            raise HTTPError(403, "the cache server is read-only")
        if not writable:
            raise HTTPError(403, "this token may only read")
        if namespace in self.server.read_only_namespaces:
            raise HTTPError(403, f"namespace {namespace} is read-only")

    def _content_length(self, limit: int | None = None) -> int:
        text = self.headers.get("Content-Length")
        if text is None or self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "a PUT needs a Content-Length (no chunked bodies)")
        if not text.isdigit():
            raise HTTPError(400, f"bad Content-Length {text[:40]!r}")
        size = int(text)
        limit = self.server.max_object_size if limit is None else limit
        if size > limit:
            raise HTTPError(413, f"body of {size} bytes is over the limit of {limit}")
        return size

    def _refuse(self, status: int, message: str) -> None:
        if status != 404:
            self.server.count(refused=1)
        if self._unread:  # drop a small body, else close the connection
            text = self.headers.get("Content-Length") or ""
            left = int(text) if text.isdigit() else DRAIN_MAX + 1
            if left > DRAIN_MAX or self.headers.get("Transfer-Encoding"):
                self.close_connection = True
            else:
                self.rfile.read(left)
        extra = {"WWW-Authenticate": 'Bearer realm="gocaas-cache"'} if status == 401 else {}
        self._json(status, {"error": message}, extra)

    def _json(self, status: int, doc: dict[str, object], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode() + b"\n", "application/json", headers)

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self.server.count(bytes_out=len(body))

    def _send_file(self, fd: int, headers: dict[str, str]) -> None:
        size = os.fstat(fd).st_size
        head = self.command == "HEAD"
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if head:
            return
        if size <= INLINE_MAX:
            self.wfile.write(os.read(fd, size))
            self.server.count(bytes_out=size)
            return
        with os.fdopen(os.dup(fd), "rb") as f:
            sent = self.connection.sendfile(f, 0, size)
        self.server.count(bytes_out=sent)
        if sent != size:
            self.close_connection = True
