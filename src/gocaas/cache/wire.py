"""The GOCACHEPROG wire format (see cmd/go/internal/cacheprog): framing, requests, responses.

Requests are JSON objects, one a line, each followed by a blank line; a `put` with BodySize > 0 is followed by
one more line, the body as a JSON string of standard base64. Bodies can be hundreds of MB, so `read_body`
decodes them in chunks into a sink and never holds one whole.

Uses the C parts of the json module (`_json`) directly: importing `json` pulls in `re` and costs
milliseconds on every go command, and requests are flat objects of ints, strings and bools anyway.
"""

from __future__ import annotations

import os
import time
from binascii import a2b_base64, b2a_base64

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

try:
    from _json import encode_basestring_ascii as quote
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - CPython always has _json
    from json import dumps as quote  # type: ignore[assignment]

    _make_scanner = None

# A pipe holds 64 KiB, so a larger read gains nothing, and it costs: os.read allocates the whole size first,
# and past glibc's mmap threshold (128 KiB) that is an mmap, an mremap to shrink it and a munmap for every
# request of ~100 bytes (three syscalls and a page fault a get, most of the resident program's CPU).
READ_SIZE = 1 << 16


class ProtocolError(Exception):
    """The go command sent something this program cannot parse: fatal to the session."""


def _bad_constant(name: str) -> float:
    raise ProtocolError(f"unexpected JSON constant {name}")


class _Context:
    """What _json.make_scanner reads from a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_bad_constant)
    memo: dict[str, str] = {}  # noqa: RUF012 - the C scanner keeps its own


if _make_scanner is not None:
    _scan = _make_scanner(_Context())

    def decode(line: bytes) -> dict[str, object]:
        try:
            text = line.decode()
            obj, end = _scan(text, 0)
        except StopIteration as e:
            raise ProtocolError(f"bad JSON at offset {e.value}: {line[:200]!r}") from None
        except ValueError as e:  # JSONDecodeError (the C scanner imports json.decoder only to raise it)
            raise ProtocolError(f"bad JSON: {e}: {line[:200]!r}") from None
        if type(obj) is not dict or text[end:].strip():
            raise ProtocolError(f"not one JSON object: {text[:200]!r}")
        return obj

else:  # pragma: no cover

    def decode(line: bytes) -> dict[str, object]:
        import json

        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ProtocolError(f"bad JSON: {e}") from None
        if type(obj) is not dict:
            raise ProtocolError(f"not a JSON object: {line[:200]!r}")
        return obj


def b64(data: bytes) -> str:
    return b2a_base64(data, newline=False).decode()


def unb64(value: object, what: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ProtocolError(f"{what} is not a base64 string")
    return a2b_base64(value)


def rfc3339(time_ns: int) -> str:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    t = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ" % (*t[:6], nanos)  # noqa: UP031 - fastest here


def response(
    rid: int,
    *,
    err: str | None = None,
    miss: bool = False,
    output_id: bytes | None = None,
    size: int = 0,
    time_ns: int | None = None,
    disk_path: str | None = None,
    known: tuple[str, ...] | None = None,
) -> bytes:
    """One response line (the fields the go command reads, omitted when empty like Go's omitempty)."""
    parts = [f'{{"ID":{rid}']
    if err:
        parts.append(f',"Err":{quote(err)}')
    if known is not None:
        parts.append(',"KnownCommands":[' + ",".join(quote(c) for c in known) + "]")
    if miss:
        parts.append(',"Miss":true')
    if output_id:
        parts.append(f',"OutputID":"{b64(output_id)}"')
    if size:
        parts.append(f',"Size":{size}')
    if time_ns is not None:
        parts.append(f',"Time":"{rfc3339(time_ns)}"')
    if disk_path:
        parts.append(f',"DiskPath":{quote(disk_path)}')
    parts.append("}\n")
    return "".join(parts).encode()


def hit_answer(output_id: bytes, size: int, time_ns: int, disk_path: str) -> bytes:
    """A get hit's response after its ID (`b'{"ID":%d' % rid + hit_answer(...)`): the line a warm go command
    asks for ~1,000 times, in one format with no branches on fields a hit always has, and the same for
    every request for that entry."""
    size_field = f',"Size":{size}' if size else ""
    return (
        f',"OutputID":"{b64(output_id)}"{size_field},"Time":"{rfc3339(time_ns)}","DiskPath":{quote(disk_path)}}}\n'
    ).encode()


def hit_response(rid: int, output_id: bytes, size: int, time_ns: int, disk_path: str) -> bytes:
    """`response` for a get hit."""
    return b'{"ID":%d' % rid + hit_answer(output_id, size, time_ns, disk_path)


class Reader:
    """Lines and streamed bodies from a file descriptor, with its own buffer (no line-length cap)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.pos = 0
        self.eof = False

    def _fill(self) -> bool:
        """Read more input; False at end of input."""
        if self.eof:
            return False
        data = os.read(self.fd, READ_SIZE)
        if not data:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + data if self.pos < len(self.buf) else data
        self.pos = 0
        return True

    def pending(self) -> bool:
        """Whether more input is already buffered (more requests waiting behind this one)."""
        return not self.buf[self.pos :].isspace() if self.pos < len(self.buf) else False

    def readline(self) -> bytes | None:
        """The next line without its newline; None at end of input (a final unterminated line counts)."""
        start = 0
        while True:
            i = self.buf.find(b"\n", self.pos + start)
            if i >= 0:
                line = self.buf[self.pos : i]
                self.pos = i + 1
                return line
            start = len(self.buf) - self.pos
            if not self._fill():
                if self.pos >= len(self.buf):
                    return None
                line = self.buf[self.pos :]
                self.pos = len(self.buf)
                return line

    def read_body(self, sink: Callable[[bytes], None]) -> int:
        """Decode the next non-blank line, a JSON string of base64, into sink; return the decoded size."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in b" \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                break
            if not self._fill():
                raise ProtocolError("end of input before a put body")
        if self.buf[self.pos] != 0x22:  # '"'
            raise ProtocolError(f"put body is not a JSON string: {self.buf[self.pos : self.pos + 40]!r}")
        self.pos += 1
        carry = b""
        total = 0
        while True:
            end = self.buf.find(b'"', self.pos)
            chunk = self.buf[self.pos : end if end >= 0 else len(self.buf)]
            if b"\\" in chunk:
                chunk = chunk.replace(b"\\", b"")  # only "\/" can appear in a JSON string of base64
            data = carry + chunk if carry else chunk
            usable = len(data) - len(data) % 4 if end < 0 else len(data)
            if usable:
                decoded = a2b_base64(data[:usable])
                sink(decoded)
                total += len(decoded)
            carry = data[usable:]
            if end >= 0:
                self.pos = end + 1
                return total
            self.pos = len(self.buf)
            if not self._fill():
                raise ProtocolError("end of input inside a put body")
