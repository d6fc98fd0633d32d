"""Session traces and prefetching: the server's trace store, manifest and pack routes (traces.py, handler.py),
and cacheprog --remote streaming a trace's objects in ahead of the gets (prefetch.py), by protocol sessions
and by the real go command."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gocaas.cache import Store, cacheprog_command
from gocaas.cache.client import HTTPRemote
from gocaas.cache.handler import INLINE_MAX
from gocaas.cache.prefetch import MAX_MANIFESTS
from gocaas.cache.traces import TraceStore
from tests.cache.conftest import (
    HELLO,
    READ_TOKEN,
    TOKEN,
    LiveServer,
    Session,
    go,
    go_env,
    python_env,
    read_stats,
    remote_args,
    sha,
)
from tests.cache.test_go import _compiles
from tests.cache.test_server import Client, error

NS = "team"


def bodies(n: int) -> list[bytes]:
    """n bodies of varied sizes, one over INLINE_MAX (sent with sendfile) and one repeated (two actions, one
    object)."""
    out = [f"object {i} ".encode() * (1 + 37 * i) for i in range(n)]
    out[1] = b"big " * (INLINE_MAX // 2)
    out[-1] = out[0]
    return out


def aid(i: int) -> bytes:
    return sha(f"action {i}".encode())


def session(local: Path, url: str, stats: Path, *extra: str) -> Session:
    env = python_env(GOCAAS_CACHEPROG_STATS=str(stats))
    return Session(local, "--namespace", NS, *remote_args(url, *extra), env=env)


def fill(server: LiveServer, tmp_path: Path, n: int = 12, *extra: str, name: str = "a") -> list[bytes]:
    """A first worker puts n entries through the remote and closes: its trace goes to the server."""
    data = bodies(n)
    a = session(tmp_path / f"worker-{name}", server.url, tmp_path / f"{name}.jsonl", *extra)
    for i, body in enumerate(data):
        assert a.get(aid(i))["Miss"] is True
        a.put(aid(i), body)
    assert a.close() == 0
    return data


# -- the server's side


def test_a_trace_answers_the_manifest_of_what_the_store_has(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server()
    client = Client(server)
    for i, body in enumerate((b"one", b"two", b"three")):
        assert client.put_object(body) == 201
        assert client.put_entry(NS, aid(i).hex(), body) == 201
    trace = [aid(2), aid(0), aid(9), aid(1)]  # aid(9) is in the trace but not in the store
    status, _, body = client("POST", f"/v1/{NS}/traces", b"\n".join(a.hex().encode() for a in trace))
    assert status == 201, body

    status, headers, body = client("GET", f"/v1/{NS}/traces/{aid(0).hex()}")
    assert status == 200 and headers["Content-Type"] == "text/plain"
    lines = [line.split() for line in body.decode().splitlines()]
    assert [line[0] for line in lines] == [aid(2).hex(), aid(0).hex(), aid(1).hex()], (
        "trace order, present only"
    )
    assert lines[1][1:3] == [sha(b"one").hex(), "3"]

    assert client("GET", f"/v1/other/traces/{aid(0).hex()}")[0] == 404, "traces belong to their namespace"
    status, _, body = client("GET", f"/v1/{NS}/traces/{aid(7).hex()}")
    assert status == 404 and aid(7).hex() in error(body)

    remote = HTTPRemote(server.url, TOKEN)
    assert [(a, e.output_id) for a, e in remote.manifest(NS, aid(1))] == [
        (aid(2), sha(b"three")), (aid(0), sha(b"one")), (aid(1), sha(b"two"))
    ]  # fmt: skip
    assert remote.manifest(NS, aid(7)) == []


def test_trace_uploads_are_checked(live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    server = live_server(read_token=READ_TOKEN, read_only_namespaces=["frozen"])
    client = Client(server)
    good = aid(1).hex().encode()
    status, _, body = client("POST", f"/v1/{NS}/traces", good + b"\nnot-hex\n")
    assert status == 400 and "line 2" in error(body)
    status, _, body = client("POST", f"/v1/{NS}/traces", good.upper())
    assert status == 400 and "lowercase" in error(body)
    assert client("POST", f"/v1/{NS}/traces", b"\n\n")[0] == 400, "an empty trace"
    assert client("POST", f"/v1/{NS}/traces", good, token=READ_TOKEN)[0] == 403
    assert client("POST", "/v1/frozen/traces", good)[0] == 403
    assert client("POST", "/v1/.bad/traces", good)[0] == 400
    assert client("POST", f"/v1/{NS}/ac/{aid(1).hex()}", good)[0] == 405
    assert not (server.store / "traces" / NS).exists(), "nothing refused was stored"


def test_the_newest_trace_wins_and_old_ones_are_trimmed(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    traces = TraceStore(store, max_traces=2)
    first = traces.add(NS, [aid(1), aid(2)])
    second = traces.add(NS, [aid(2), aid(3)])
    assert traces.find(NS, aid(2)) == [aid(2), aid(3)] and traces.find(NS, aid(1)) == [aid(1), aid(2)]
    assert traces.add(NS, [aid(3), aid(2)]) == second, "the same set again is the same trace"
    third = traces.add(NS, [aid(4)])
    directory = tmp_path / "store" / "traces" / NS
    assert {p.name for p in directory.iterdir()} == {second, third}, "the oldest went past max_traces"
    assert first != second != third
    assert traces.find(NS, aid(1)) is None
    reopened = TraceStore(Store(tmp_path / "store"), max_traces=2)
    assert reopened.find(NS, aid(3)) == [aid(2), aid(3)], "the index is rebuilt from the files"
    assert reopened.find("other", aid(3)) is None


def test_a_pack_streams_objects_in_the_order_asked(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    client = Client(server)
    small, big = b"small body", b"b" * (INLINE_MAX * 3)  # the big one goes by sendfile
    for body in (small, big):
        assert client.put_object(body) == 201
    missing = sha(b"never put")
    stream = HTTPRemote(server.url, TOKEN).pack([sha(big), missing, sha(small)])
    assert stream.next() == (sha(big), len(big))
    got = bytearray()

    class Sink:
        def write(self, data: bytes | memoryview) -> None:
            got.extend(data)

        def abort(self) -> None:
            raise AssertionError("not aborted")

    stream.read_into(Sink())
    assert bytes(got) == big
    assert stream.next() == (missing, -1), "absent: said, no bytes"
    assert stream.next() == (sha(small), len(small)) and stream.read_all() == small
    assert stream.next() is None
    stream.close()
    status, _, body = client("POST", "/v1/cas/pack", b"zz\n")
    assert status == 400 and "line 1" in error(body)


# -- cacheprog's side


def test_a_fresh_worker_prefetches_what_the_last_session_used(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server()
    data = fill(server, tmp_path)
    (a_stats,) = read_stats(tmp_path / "a.jsonl")
    assert a_stats["traces_sent"] == 1 and a_stats["uploads"] == len(data)

    b = session(tmp_path / "worker-b", server.url, tmp_path / "b.jsonl")
    for i, body in enumerate(data):
        hit = b.get(aid(i))
        assert hit.get("Miss") is not True and hit["Size"] == len(body), i
        assert Path(hit["DiskPath"]).read_bytes() == body
        assert Path(hit["DiskPath"]).is_relative_to(tmp_path / "worker-b")
    assert b.close() == 0
    (b_stats,) = read_stats(tmp_path / "b.jsonl")
    unique = len({sha(body) for body in data})
    assert b_stats["hits"] == len(data) and b_stats["remote_errors"] == 0
    assert b_stats["remote_requests"] == 2, "one manifest, one pack: no request per get"
    assert b_stats["prefetched"] == unique and b_stats["remote_bytes_down"] == sum(map(len, set(data)))
    assert b_stats["traces_sent"] == 0, "the server has this session's trace already"
    local, remote = Store(tmp_path / "worker-b"), Store(server.store)
    for i in range(len(data)):
        assert local.get(NS, aid(i)) == remote.get(NS, aid(i)), "entries written, with the put time"


def test_no_prefetch_fetches_one_by_one_and_sends_no_trace(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server()
    data = fill(server, tmp_path, 6, "--no-prefetch")
    (a_stats,) = read_stats(tmp_path / "a.jsonl")
    assert a_stats["traces_sent"] == 0 and not (server.store / "traces").exists()

    def read_all(name: str, *extra: str) -> dict[str, int]:
        worker = session(tmp_path / name, server.url, tmp_path / f"{name}.jsonl", *extra)
        for i, body in enumerate(data):
            assert worker.get(aid(i))["Size"] == len(body)
        assert worker.close() == 0
        return read_stats(tmp_path / f"{name}.jsonl")[0]

    leaves_a_trace = read_all("b")  # no trace yet: a few manifests asked for, one get at a time, a trace sent
    asked = len(data) + min(len(data), MAX_MANIFESTS) + 1
    assert leaves_a_trace["remote_requests"] == asked and leaves_a_trace["traces_sent"] == 1
    opted_out = read_all("c", "--no-prefetch")
    assert opted_out["remote_requests"] == len(data) and opted_out["prefetched"] == 0
    assert opted_out["remote_hits"] == len(data) and opted_out["traces_sent"] == 0


def test_a_session_using_little_of_its_manifest_sends_its_own_trace(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """A cold session's trace holds more than a warm one reads: the first warm worker sends the tighter
    trace, and the next one streams only that."""
    server = live_server()
    data = fill(server, tmp_path, 10)

    def read_some(name: str, count: int) -> dict[str, int]:
        worker = session(tmp_path / name, server.url, tmp_path / f"{name}.jsonl")
        for i in range(count):
            assert worker.get(aid(i))["Size"] == len(data[i])
        assert worker.close() == 0
        return read_stats(tmp_path / f"{name}.jsonl")[0]

    first = read_some("b", 3)
    # it streamed a's whole trace (what came before its close: at least what it used) and sent its own
    assert 3 <= first["prefetched"] <= len({sha(d) for d in data}) and first["traces_sent"] == 1
    second = read_some("c", 3)
    assert second["prefetched"] == 3 and second["traces_sent"] == 0, "only what b used"
    assert second["remote_requests"] == 2


def test_a_get_outside_the_manifest_is_fetched_alone(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server()
    data = fill(server, tmp_path, 5)
    outsider = b"put by a session that sent no trace" * 10
    c = session(tmp_path / "worker-c", server.url, tmp_path / "c.jsonl", "--no-prefetch")
    c.put(aid(100), outsider)
    assert c.close() == 0

    b = session(tmp_path / "worker-b", server.url, tmp_path / "b.jsonl")
    assert b.get(aid(0))["Size"] == len(data[0])
    hit = b.get(aid(100))
    assert Path(hit["DiskPath"]).read_bytes() == outsider
    assert b.get(aid(101))["Miss"] is True
    assert b.close() == 0
    (b_stats,) = read_stats(tmp_path / "b.jsonl")
    assert b_stats["hits"] == 2 and b_stats["misses"] == 1 and b_stats["remote_errors"] == 0
    assert 1 <= b_stats["prefetched"] <= len({sha(d) for d in data}), "the stream stops at close"
    assert b_stats["traces_sent"] == 1, "it used something no trace held"


def test_a_corrupt_object_in_a_pack_is_a_miss_not_an_error(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server()
    data = fill(server, tmp_path, 6)
    bad = data[1]  # over the store's verify limit: the server only checks its size, the worker hashes it
    path = Store(server.store).path(sha(bad))
    Path(path).write_bytes(b"X" * len(bad))

    b = session(tmp_path / "worker-b", server.url, tmp_path / "b.jsonl")
    results = [b.get(aid(i)) for i in range(len(data))]
    assert b.close() == 0
    assert results[1]["Miss"] is True and "Err" not in results[1]
    assert all(r["Size"] == len(d) for i, (r, d) in enumerate(zip(results, data, strict=True)) if i != 1)
    (b_stats,) = read_stats(tmp_path / "b.jsonl")
    assert b_stats["remote_errors"] >= 1 and b_stats["hits"] == len(data) - 1
    assert not Path(Store(tmp_path / "worker-b").path(sha(bad))).exists(), "the bad body was not kept"


# -- the go command


def test_a_fresh_go_build_is_streamed_in(
    tmp_path: Path, warm_store: Path, live_server: Callable[..., LiveServer]
) -> None:
    """The first fresh worker fetches one get at a time and leaves its trace; the next one gets the whole
    build in two requests, compiles nothing, and links the same binary."""
    remote_store = tmp_path / "remote"
    shutil.copytree(warm_store, remote_store)
    server = live_server(remote_store)
    stats = tmp_path / "stats.jsonl"

    def build(name: str) -> tuple[bytes, dict[str, int], list[str]]:
        args = remote_args(server.url)
        env = go_env(
            tmp_path, cacheprog_command(tmp_path / name, extra=args), GOCAAS_CACHEPROG_STATS=str(stats)
        )
        proc = go(["build", "-x", "-o", str(tmp_path / f"{name}.bin"), "."], HELLO, env)
        compiled = [line for line in _compiles(proc.stderr) if "/compile " in line]
        return (tmp_path / f"{name}.bin").read_bytes(), read_stats(stats)[-1], compiled

    first, s1, compiled = build("worker-1")
    assert compiled == [] and s1["remote_hits"] > 50 and s1["traces_sent"] == 1
    assert s1["remote_requests"] > s1["remote_hits"], "a get at a time (and the trace)"
    second, s2, compiled = build("worker-2")
    assert compiled == [] and second == first
    assert (s2["gets"], s2["hits"]) == (s1["gets"], s1["hits"]) and s2["remote_errors"] == 0
    # a manifest and a pack; what go never finds (its misses) and its puts as in the first build
    most = 2 + 2 * s2["misses"] + 2 * s2["uploads"]
    assert s2["prefetched"] > 50 and s2["remote_requests"] <= most < s1["remote_requests"], json.dumps(s2)


@pytest.mark.parametrize("flag", ["--no-prefetch", "--no-prefetch=1"])
def test_the_flag(flag: str) -> None:
    from gocaas.cache.options import parse_args

    if "=" in flag:
        with pytest.raises(ValueError, match="unknown argument"):
            parse_args([flag])
    else:
        assert parse_args([flag]).prefetch is False and parse_args([]).prefetch is True
