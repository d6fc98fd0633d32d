"""cacheprog --remote spoken to as the go command does: read through, write behind, and a remote that is down,
failing or hanging bypassed by the circuit breaker (no go here; see test_go_remote.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gocaas.cache import Store
from gocaas.cache.options import parse_args
from tests.cache.conftest import TOKEN, LiveServer, Session, python_env, read_stats, remote_args, sha

BODY = b"\x7fELF pretend binary" * 5000  # over HEAD_MIN: uploads ask first
AID = sha(b"an action")


def session(local: Path, url: str, tmp_path: Path, *extra: str, **env: str) -> Session:
    stats = str(tmp_path / "stats.jsonl")
    return Session(local, *remote_args(url, *extra), env=python_env(GOCAAS_CACHEPROG_STATS=stats, **env))


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_put_is_uploaded_and_a_fresh_store_reads_it_back(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    server = live_server()
    a = session(tmp_path / "worker-a", server.url, tmp_path)
    assert a.get(AID)["Miss"] is True
    a.put(AID, BODY)
    a.put(sha(b"small"), b"small body")
    assert a.close() == 0, "close waits for the uploads"
    remote = Store(server.store)
    assert remote.get("default", AID) is not None and remote.get("default", sha(b"small")) is not None

    b = session(tmp_path / "worker-b", server.url, tmp_path)
    hit = b.get(AID)
    path = Path(hit["DiskPath"])
    assert hit["Size"] == len(BODY) and path.read_bytes() == BODY
    assert path.is_relative_to(tmp_path / "worker-b"), "the local store was filled"
    assert b.get(AID)["DiskPath"] == str(path)
    assert b.close() == 0
    local_entry, remote_entry = Store(tmp_path / "worker-b").get("default", AID), remote.get("default", AID)
    assert local_entry == remote_entry, "same output, size and put time"

    first, second = read_stats(tmp_path / "stats.jsonl")
    assert first["uploads"] == 2 and first["remote_bytes_up"] == len(BODY) + len(b"small body")
    assert first["remote_misses"] == 1 and first["upload_dropped"] == 0
    assert second["hits"] == 2 and second["remote_hits"] == 1, "the second get was local"
    assert first["traces_sent"] == 1 and second["traces_sent"] == 1, "b used half of a's: a tighter trace"
    # b's miss streamed in a's trace (prefetch.py) in one pack request: BODY, then the small one unless
    # b's close stopped the stream first
    assert second["prefetch_hits"] == 1 and second["prefetched"] in (1, 2)
    assert second["remote_bytes_down"] in (len(BODY), len(BODY) + len(b"small body"))
    assert second["remote_errors"] == 0


def test_what_the_remote_has_is_not_sent_again(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    server = live_server()
    Store(server.store).put("default", sha(b"other action"), sha(BODY), BODY)
    s = session(tmp_path / "local", server.url, tmp_path)
    s.put(AID, BODY)
    s.close()
    (line,) = read_stats(tmp_path / "stats.jsonl")
    assert line["uploads"] == 1 and line["upload_skipped"] == 1 and line["remote_bytes_up"] == 0
    assert Store(server.store).get("default", AID) is not None


def test_namespaces_isolated_through_the_remote(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    server = live_server()
    a = session(tmp_path / "a", server.url, tmp_path, "--namespace", "team-a")
    a.put(AID, BODY)
    a.close()
    b = session(tmp_path / "b", server.url, tmp_path, "--namespace", "team-b")
    assert b.get(AID)["Miss"] is True
    b.close()
    c = session(tmp_path / "c", server.url, tmp_path, "--namespace", "team-a")
    assert c.get(AID)["Size"] == len(BODY)
    c.close()


def test_read_only_writes_neither_store(tmp_path: Path, live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    Store(server.store).put("default", AID, sha(BODY), BODY)
    local = tmp_path / "local"
    Store(local).put("default", sha(b"local"), sha(b"local body"), b"local body")
    before_local, before_remote = snapshot(local), snapshot(server.store)
    s = session(local, server.url, tmp_path, "--read-only")
    assert s.hello["KnownCommands"] == ["get", "close"]
    hit = s.get(AID)
    assert Path(hit["DiskPath"]).read_bytes() == BODY, "served from a private temp dir"
    assert s.get(sha(b"local"))["Size"] == len(b"local body")
    assert s.close() == 0
    assert not Path(hit["DiskPath"]).exists(), "removed once the session is over"
    assert snapshot(local) == before_local and snapshot(server.store) == before_remote


def test_remote_read_only_never_uploads(tmp_path: Path, live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    s = session(tmp_path / "local", server.url, tmp_path, "--remote-read-only")
    s.put(AID, BODY)
    assert s.get(AID)["Size"] == len(BODY)
    s.close()
    assert not (server.store / "actions").exists()
    assert read_stats(tmp_path / "stats.jsonl")[0]["remote_requests"] == 0


def test_a_read_only_token_stops_uploads_quietly(
    tmp_path: Path, live_server: Callable[..., LiveServer]
) -> None:
    server = live_server(read_token="reader")
    s = Session(
        tmp_path / "local",
        "--remote",
        server.url,
        env=python_env(GOCAAS_CACHE_TOKEN="reader", GOCAAS_CACHEPROG_STATS=str(tmp_path / "stats.jsonl")),
    )
    for i in range(10):
        assert "Err" not in s.put(sha(b"k%d" % i), BODY + bytes([i]))
    s.close()
    (line,) = read_stats(tmp_path / "stats.jsonl")
    assert line["uploads"] == 0 and line["breaker_opens"] == 0, "a 403 is a refusal, not an outage"
    assert line["remote_requests"] <= 2, "one refusal and it stops asking"
    assert not (server.store / "actions").exists()


def test_token_from_a_file(tmp_path: Path, live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    Store(server.store).put("default", AID, sha(BODY), BODY)
    (tmp_path / "token").write_text(TOKEN + "\n")
    s = Session(tmp_path / "local", "--remote", server.url, "--token-file", str(tmp_path / "token"))
    assert s.get(AID)["Size"] == len(BODY)
    s.close()
    assert parse_args(["--token-file", str(tmp_path / "token")]).token == TOKEN


# -- remotes that fail


@pytest.fixture
def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A misbehaving remote on loopback, for the block: its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # a handler that never answers must not hold the test up
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Failing(_Quiet):
    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_PUT = do_GET


@pytest.fixture
def failing_url() -> Iterator[str]:
    with serving(_Failing) as url:
        yield url


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """Accepts connections (the kernel does, from the backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


BAD = b"not what its name says" * 10
KEYS = [sha(b"k%d" % i) for i in range(20)]


class _Lying(_Quiet):
    """Answers every get, in a manifest naming all of KEYS, in a pack and alone, with a body (BAD) that does
    not hash to the output ID it claims; fails writes."""

    def do_GET(self) -> None:
        oid = sha(b"claimed").hex()
        if "/traces/" in self.path:
            self._answer(b"".join(f"{k.hex()} {oid} {len(BAD)} 0\n".encode() for k in KEYS))
        else:
            self._answer(BAD, {"X-Gocaas-Output-Id": oid, "X-Gocaas-Size": str(len(BAD))})

    def do_POST(self) -> None:  # a pack: each output ID asked for, with BAD
        asked = self.rfile.read(int(self.headers["Content-Length"])).split()
        self._answer(b"".join(a + b" %d\n" % len(BAD) + BAD for a in asked))

    def do_PUT(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_PUT

    def _answer(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def lying_url() -> Iterator[str]:
    with serving(_Lying) as url:
        yield url


# "lying": before, bodies that failed their hash after a 200 never opened the breaker: every get downloaded
# one and dropped it (a warm go build std, 12.5 s instead of 5 s with no remote at all)
@pytest.mark.parametrize(
    ("kind", "extra"),
    [("dead", ()), ("failing", ()), ("hanging", ()), ("lying", ()), ("lying", ("--no-prefetch",))],
    ids=["dead", "failing", "hanging", "lying-pack", "lying-alone"],
)
def test_a_broken_remote_is_bypassed(
    tmp_path: Path, kind: str, extra: tuple[str, ...], request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    local = tmp_path / "local"
    s = session(local, url, tmp_path, "--remote-timeout", "0.3", "--flush-timeout", "1", *extra)
    started = time.monotonic()
    for key in KEYS:
        assert s.get(key) == {"ID": s.next_id, "Miss": True}, "a miss, never an error"
    for i, key in enumerate(KEYS):
        put = s.put(key, BODY + bytes([i]))
        assert "Err" not in put and Path(put["DiskPath"]).read_bytes() == BODY + bytes([i])
    assert s.get(KEYS[3])["Size"] == len(BODY) + 1, "the local store works on"
    assert s.close() == 0
    assert time.monotonic() - started < 30
    (line,) = read_stats(tmp_path / "stats.jsonl")
    assert line["breaker_opens"] == 1
    assert line["remote_requests"] <= 3 + 4, "fail_max, plus what was in flight when it opened"
    assert line["remote_skipped"] >= 20 - 3 - 4 and line["remote_errors"] >= 3
    assert line["errors"] == 0 and line["misses"] == 20 and line["puts"] == 20
    if kind == "dead":
        assert s.proc.stderr is not None and b"unavailable" in s.proc.stderr.read()

    # the next cacheprog of the build does not knock again before the cool-down is over
    again = session(local, url, tmp_path, "--remote-timeout", "0.3")
    assert again.get(sha(b"new"))["Miss"] is True
    again.close()
    last = read_stats(tmp_path / "stats.jsonl")[-1]
    assert last["remote_requests"] == 0 and last["remote_skipped"] == 1 and last["breaker_opens"] == 0


def test_a_remote_that_comes_back(tmp_path: Path, live_server: Callable[..., LiveServer]) -> None:
    """After the cool-down one trial request closes the breaker again (and forgets the down mark)."""
    from gocaas.cache.client import HTTPRemote
    from gocaas.cache.remote import RemoteTier

    server = live_server()
    Store(server.store).put("default", AID, sha(BODY), BODY)
    local = Store(tmp_path / "local")
    tier = RemoteTier(local, "default", HTTPRemote(server.url, "wrong token"), reset_timeout=0.2)
    for _ in range(4):
        assert tier.fetch(AID) is None
    assert tier.counters()["breaker_opens"] == 1 and list(local_root(local).glob("remote-*.down"))
    tier.client = HTTPRemote(server.url, TOKEN)  # the operator fixed the token
    time.sleep(0.3)
    found = tier.fetch(AID)
    assert found is not None and Path(found[1]).read_bytes() == BODY
    assert not list(local_root(local).glob("remote-*.down"))
    tier.close(1)


def local_root(store: Store) -> Path:
    return Path(store.root)


class _Boundless(_Quiet):
    """Claims an object of 10^18 bytes, and a manifest without end; streams until the client hangs up."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.send_response(200)
        if "/traces/" in self.path:
            line = (sha(b"a").hex() + " " + sha(b"o").hex() + " 1 0\n").encode()
        else:
            self.send_header("X-Gocaas-Output-Id", sha(b"o").hex())
            self.send_header("X-Gocaas-Size", str(10**18))
            self.send_header("X-Gocaas-Time-Ns", "0")
            self.send_header("Content-Length", str(10**18))
            line = bytes(1 << 16)
        self.end_headers()
        try:
            while True:
                self.wfile.write(line * 16)
        except OSError:  # the client refused it: good
            pass


def test_a_remote_claiming_boundless_bodies_fills_neither_disk_nor_memory(tmp_path: Path) -> None:
    # Before: one get wrote 8.4 GB into tmp/ in 20 s; an endless manifest grew cacheprog to 24 GB until the
    # kernel killed it, and the go command with it.
    with serving(_Boundless) as url:
        local = tmp_path / "local"
        s = session(local, url, tmp_path, "--flush-timeout", "1")
        started = time.monotonic()
        for i in range(3):
            assert s.get(sha(b"k%d" % i)) == {"ID": s.next_id, "Miss": True}
        assert s.close() == 0
        assert time.monotonic() - started < 30
        assert sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) < 1 << 20


class _WritesHang(_Quiet):
    """Answers reads (nothing here) at once; takes writes and never answers them."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        time.sleep(120)

    do_HEAD = do_GET
    do_POST = do_PUT


def test_close_is_bounded_by_the_flush_timeout_when_writes_hang(tmp_path: Path) -> None:
    # The uploads were dropped at --flush-timeout, but the session's trace was then sent with the whole
    # upload timeout: 35 s to close instead of ~1.
    with serving(_WritesHang) as url:
        s = session(tmp_path / "local", url, tmp_path, "--flush-timeout", "1")
        assert s.get(AID) == {"ID": s.next_id, "Miss": True}
        assert "Err" not in s.put(AID, BODY)
        started = time.monotonic()
        assert s.close() == 0
        assert time.monotonic() - started < 15
        (line,) = read_stats(tmp_path / "stats.jsonl")
        assert line["traces_sent"] == 0, line


class _DrippingPack(_Quiet):
    """A manifest naming all of KEYS at once; their pack, a byte every 50 ms (just under any read's timeout,
    so only a deadline ends it); a get alone, a miss at once."""

    def do_GET(self) -> None:
        body = b""
        if "/traces/" in self.path:
            body = b"".join(f"{k.hex()} {sha(k).hex()} 100 0\n".encode() for k in KEYS)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        asked = self.rfile.read(int(self.headers["Content-Length"])).split()
        self.send_response(200)
        self.send_header("Content-Length", str(len(asked) * (64 + 5 + 100)))
        self.end_headers()
        try:
            for byte in asked[0] + b" 100\n" + bytes(100):
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:  # the client hung up: good
            pass


def test_a_stalled_pack_holds_one_get_not_each(tmp_path: Path) -> None:
    # Before, each get waited out the stall on its own (--remote-timeout), and the build with it: 2 s a get,
    # half an hour for a go build std.
    with serving(_DrippingPack) as url:
        s = session(tmp_path / "local", url, tmp_path, "--remote-timeout", "0.5", "--flush-timeout", "1")
        started = time.monotonic()
        for key in KEYS:
            assert s.get(key) == {"ID": s.next_id, "Miss": True}
        took = time.monotonic() - started
        assert s.close() == 0
        assert took < len(KEYS) * 0.5 / 2, "the gets after the stall did not wait"
        (line,) = read_stats(tmp_path / "stats.jsonl")
        assert line["remote_errors"] == 1, "the stall, struck once on the breaker"
        assert line["breaker_opens"] == 0 and line["remote_misses"] == len(KEYS), "each asked alone, after"
        assert line["prefetched"] == 0
