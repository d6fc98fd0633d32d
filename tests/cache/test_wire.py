"""The GOCACHEPROG wire format: framing, streamed bodies, responses the go command can read."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Iterator

import pytest

from gocaas.cache import wire
from gocaas.cache.wire import ProtocolError, Reader, decode, hit_response, response, rfc3339

Feed = Callable[[bytes], None]


@pytest.fixture
def pipe() -> Iterator[tuple[int, Feed]]:
    """(read end, feed): feed(data) writes data from a thread (it may exceed the pipe's buffer), then closes
    the write end. At teardown the read end goes first, so a feeder still writing (the test stopped reading
    at an error) ends with EPIPE; it is joined before anything else is closed, so that no close ever hits an
    fd number that another test's pipe may have been given meanwhile."""
    r, w = os.pipe()
    feeders: list[threading.Thread] = []

    def feed(data: bytes) -> None:
        def run() -> None:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view) :]
            except BrokenPipeError:
                pass
            finally:
                os.close(w)

        feeders.append(threading.Thread(target=run, daemon=True))
        feeders[-1].start()

    yield r, feed
    os.close(r)
    for feeder in feeders:
        feeder.join(timeout=30)
    if not feeders:
        os.close(w)


def test_lines_and_bodies_across_tiny_reads(pipe: tuple[int, Feed], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "READ_SIZE", 7)  # every boundary lands somewhere awkward
    r, feed = pipe
    body = os.urandom(10_000)
    long_line = b"x" * 100_000
    stream = (
        b'{"ID":1,"Command":"put","BodySize":10000}\n\n"'
        + base64.b64encode(body)
        + b'"\n'
        + long_line
        + b"\n\n"
        + b'{"ID":2}'
    )
    feed(stream)
    reader = Reader(r)
    assert decode(reader.readline()) == {"ID": 1, "Command": "put", "BodySize": 10000}  # type: ignore[arg-type]
    got: list[bytes] = []
    assert reader.read_body(got.append) == len(body)
    assert b"".join(got) == body
    assert reader.readline() == b""  # the newline after the body
    assert reader.readline() == long_line, "no line-length cap"
    assert reader.readline() == b""
    assert reader.readline() == b'{"ID":2}', "a last line without a newline still counts"
    assert reader.readline() is None


def test_body_in_bounded_chunks(pipe: tuple[int, Feed]) -> None:
    r, feed = pipe
    body = os.urandom(5 << 20)
    feed(b'"' + base64.b64encode(body) + b'"\n')
    sizes: list[int] = []
    chunks: list[bytes] = []
    assert Reader(r).read_body(lambda b: (sizes.append(len(b)), chunks.append(b))) == len(body)
    assert b"".join(chunks) == body
    assert max(sizes) <= wire.READ_SIZE, "never the whole body at once"


def test_escaped_slashes_and_empty_body(pipe: tuple[int, Feed]) -> None:
    r, feed = pipe
    body = b"\xff\xfe\xfd" * 50  # base64 full of '/' and '+'
    escaped = base64.b64encode(body).replace(b"/", b"\\/")
    feed(b'"' + escaped + b'"\n""\n')
    reader = Reader(r)
    out: list[bytes] = []
    reader.read_body(out.append)
    assert b"".join(out) == body
    assert reader.read_body(out.append) == 0


@pytest.mark.parametrize("data", [b"", b"not a string\n", b'"abc'])
def test_bad_bodies(pipe: tuple[int, Feed], data: bytes) -> None:
    r, feed = pipe
    feed(data)
    with pytest.raises(ProtocolError):
        Reader(r).read_body(lambda _b: None)


@pytest.mark.parametrize("line", [b"{", b"[1,2]", b'{"ID":1} x', b"NaN", b'{"a":NaN}'])
def test_bad_requests(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(line)


def test_responses_are_json_with_go_field_names() -> None:
    assert json.loads(response(0, known=("get", "close"))) == {"ID": 0, "KnownCommands": ["get", "close"]}
    assert json.loads(response(3, miss=True)) == {"ID": 3, "Miss": True}
    hit = json.loads(
        response(4, output_id=b"\x01" * 32, size=12, time_ns=1_700_000_000_123_456_789, disk_path='/a "b"/c')
    )
    assert hit == {
        "ID": 4,
        "OutputID": base64.b64encode(b"\x01" * 32).decode(),
        "Size": 12,
        "Time": "2023-11-14T22:13:20.123456789Z",
        "DiskPath": '/a "b"/c',
    }
    assert json.loads(response(5, err="boom\n")) == {"ID": 5, "Err": "boom\n"}
    assert response(6).endswith(b"}\n")


@pytest.mark.parametrize("size", [0, 1, 12, 1 << 40])
def test_hit_response_is_the_general_response(size: int) -> None:
    """The get-hit fast path writes byte for byte what `response` writes (Size left out when 0)."""
    args = (9, b"\xfe" * 32, size, 1_700_000_000_000_000_001, '/a "b"/\\c\u00e9')
    fast = hit_response(*args)
    assert fast == response(9, output_id=args[1], size=size, time_ns=args[3], disk_path=args[4])
    assert ("Size" in json.loads(fast)) == (size != 0)


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000000000Z"
    assert rfc3339(1_000_000_001) == "1970-01-01T00:00:01.000000001Z"
