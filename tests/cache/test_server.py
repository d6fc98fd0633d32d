"""`gocaas cache serve` over HTTP: auth, validation, the routes, namespaces, read-only modes; and the HTTP
client as a Backend, against the same contract as the local Store."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gocaas.cache import Backend, Store
from gocaas.cache.client import HTTPRemote, RemoteError, RemoteRefused
from gocaas.cache.diskspace import MinFree, free_space
from gocaas.cache.server import main as server_main
from gocaas.cache.server import parse_listen
from gocaas.cache.store import Entry
from tests.cache.conftest import READ_TOKEN, TOKEN, LiveServer, age, sha

BODY = b"an object body " * 300
OID = sha(BODY).hex()
AID = sha(b"an action").hex()


class Client:
    def __init__(self, server: LiveServer) -> None:
        host, port = server.server.server_address[:2]
        self.conn = http.client.HTTPConnection(host, port, timeout=10)

    def __call__(
        self, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, dict(resp.headers), resp.read()

    def put_object(self, body: bytes = BODY, token: str = TOKEN) -> int:
        return self("PUT", f"/v1/cas/{sha(body).hex()}", body, token=token)[0]

    def put_entry(self, ns: str, aid: str = AID, body: bytes = BODY, token: str = TOKEN) -> int:
        doc = {"output_id": sha(body).hex(), "size": len(body)}
        return self("PUT", f"/v1/{ns}/ac/{aid}", json.dumps(doc).encode(), token=token)[0]


@pytest.fixture
def server(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server()


@pytest.fixture
def client(server: LiveServer) -> Client:
    return Client(server)


def error(body: bytes) -> str:
    return str(json.loads(body)["error"])


def test_token_required_and_compared(client: Client) -> None:
    for token in (None, "wrong", TOKEN + "x", ""):
        status, headers, body = client("GET", f"/v1/cas/{OID}", token=token)
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"] and "token" in error(body)
    assert client("PUT", f"/v1/cas/{OID}", BODY, token="wrong")[0] == 401
    assert client("GET", f"/v1/cas/{OID}")[0] == 404, "the right token gets through"
    assert client("GET", "/healthz", token=None)[:3:2] == (200, b"ok\n")


def test_validation_names_the_field(client: Client) -> None:
    status, _, body = client("GET", f"/v1/bad..ns!/ac/{AID}")
    assert status == 400 and "namespace" in error(body)
    for bad in ("XYZ", "ABCD", "abc", "g0", "a" * 130):
        status, _, body = client("GET", f"/v1/default/ac/{bad}")
        assert status == 400 and "action_id" in error(body), bad
        status, _, body = client("GET", f"/v1/cas/{bad}")
        assert status == 400 and "output_id" in error(body), bad
    status, _, body = client("PUT", f"/v1/default/ac/{AID}", b"{not json")
    assert status == 400 and "bad entry" in error(body)
    status, _, body = client("PUT", f"/v1/default/ac/{AID}", b"[1, 2]")
    assert status == 400 and "want a JSON object" in error(body) and "not list" in error(body)
    status, _, body = client(
        "PUT", f"/v1/default/ac/{AID}", json.dumps({"output_id": OID, "size": -1}).encode()
    )
    assert status == 400 and "size" in error(body)
    assert client("GET", "/v2/whatever")[0] == 404
    assert client("GET", f"/v1/default/xx/{AID}")[0] == 404


def test_objects_verified_on_put(client: Client, server: LiveServer) -> None:
    status, _, body = client("PUT", f"/v1/cas/{OID}", BODY + b"tampered")
    assert status == 400 and "does not hash" in error(body)
    assert client("HEAD", f"/v1/cas/{OID}")[0] == 404
    assert client.put_object() == 201
    status, headers, _ = client("HEAD", f"/v1/cas/{OID}")
    assert status == 200 and headers["Content-Length"] == str(len(BODY))
    assert client("GET", f"/v1/cas/{OID}")[2] == BODY
    big = bytes(range(256)) * 1024  # over the inline limit: sent with sendfile
    assert client.put_object(big) == 201
    assert client("GET", f"/v1/cas/{sha(big).hex()}")[2] == big
    assert Path(Store(server.store).path(sha(big))).read_bytes() == big
    assert not list((server.store / "tmp").iterdir()), "the refused body's temp file is gone"


def test_size_limit_and_content_length(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(max_object_size=1000)
    client = Client(server)
    status, _, body = client("PUT", f"/v1/cas/{OID}", BODY)
    assert status == 413 and "limit" in error(body)
    host, port = server.server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as s:  # no Content-Length: refused, not hung
        s.sendall(f"PUT /v1/cas/{OID} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 411")


def test_entries_need_their_object(client: Client) -> None:
    status, _, body = client(
        "PUT", f"/v1/default/ac/{AID}", json.dumps({"output_id": OID, "size": 4500}).encode()
    )
    assert status == 409 and "PUT /v1/cas/" in error(body)
    client.put_object()
    bad_size = json.dumps({"output_id": OID, "size": 5}).encode()
    assert client("PUT", f"/v1/default/ac/{AID}", bad_size)[0] == 409
    assert client.put_entry("default") == 201
    status, headers, body = client("GET", f"/v1/default/ac/{AID}")
    doc = json.loads(body)
    assert status == 200 and doc["output_id"] == OID and doc["size"] == len(BODY) and doc["time_ns"] > 0
    assert headers["X-Gocaas-Output-Id"] == OID and headers["X-Gocaas-Size"] == str(len(BODY))
    status, headers, body = client("GET", f"/v1/default/ac/{AID}", Accept="application/octet-stream")
    assert status == 200 and body == BODY and headers["X-Gocaas-Time-Ns"] == str(doc["time_ns"])
    assert client("HEAD", f"/v1/default/ac/{AID}")[:3:2] == (200, b"")


def test_namespaces_isolated(client: Client) -> None:
    client.put_object()
    assert client.put_entry("team-a") == 201
    assert client("GET", f"/v1/team-a/ac/{AID}")[0] == 200
    assert client("GET", f"/v1/team-b/ac/{AID}")[0] == 404
    assert client("GET", f"/v1/default/ac/{AID}")[0] == 404


def test_read_only_token_namespace_and_server(live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    server = live_server(read_token=READ_TOKEN, read_only_namespaces=["frozen"])
    client = Client(server)
    assert client.put_object(token=READ_TOKEN) == 403
    assert client.put_object() == 201
    assert client.put_entry("default", token=READ_TOKEN) == 403
    status, _, body = client(
        "PUT", f"/v1/frozen/ac/{AID}", json.dumps({"output_id": OID, "size": len(BODY)}).encode()
    )
    assert status == 403 and "frozen" in error(body)
    assert client.put_entry("default") == 201
    assert client("GET", f"/v1/default/ac/{AID}", token=READ_TOKEN)[0] == 200, "a read token reads"
    assert client("GET", f"/v1/frozen/ac/{AID}")[0] == 404

    ro = live_server(server.store, read_only=True)
    assert Client(ro).put_entry("other") == 403
    assert Client(ro).put_object(b"new") == 403
    assert Client(ro)("GET", f"/v1/default/ac/{AID}")[0] == 200


def test_status_counts_requests(client: Client) -> None:
    client.put_object()
    client("GET", f"/v1/cas/{OID}")
    status, _, body = client("GET", "/v1/status")
    counters = json.loads(body)
    assert status == 200 and counters["requests"] == 3 and counters["puts"] == 1
    assert counters["bytes_in"] == len(BODY) and counters["bytes_out"] >= len(BODY)


def test_metrics_for_prometheus(live_server: Callable[..., LiveServer]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    server = live_server(read_token=READ_TOKEN, max_size=1 << 30)
    client = Client(server)
    assert client("GET", "/metrics", token=None)[0] == 401
    assert client.put_object() == 201
    assert client.put_entry("team-a") == 201
    for ns in ("team-a", "team-a", "team-b"):
        client("GET", f"/v1/{ns}/ac/{AID}")

    status, headers, body = client("GET", "/metrics", token=READ_TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return samples.get((f"gocaas_cache_server_{name}", tuple(sorted(labels.items()))))

    assert value("requests_total") == 7, "this scrape and the refused one included"
    assert value("puts_total") == 2 and value("bytes_in_total") == len(BODY)
    assert value("ac_hits_total") == 2 and value("ac_misses_total") == 1
    assert value("action_hits_total", namespace="team-a") == 2
    assert value("action_misses_total", namespace="team-b") == 1
    assert value("action_misses_total", namespace="team-a") is None
    assert value("action_puts_total", namespace="team-a") == 1
    assert value("store_bytes") is not None and value("store_bytes") >= len(BODY)
    assert value("store_budget_bytes") == 1 << 30


def test_a_server_whose_disk_runs_short_evicts_and_says_so(
    small_disk: Path, live_server: Callable[..., LiveServer]
) -> None:
    """A server writes for as long as it runs: it looks at its disk as it writes, not only every 64 MiB, and
    under --min-free evicts the least recently used entries in the background; /metrics shows the disk."""
    from prometheus_client.parser import text_string_to_metric_families

    store = Store(small_disk / "store", max_size=None)
    old = []
    for i in range(8):
        body = bytes([i]) * (1 << 20)
        key = sha(b"old %d" % i)
        store.put("default", key, sha(body), body)
        age(store, "default", key, 3 * 3600 - i)  # past the server's min_age (2 h)
        old.append(key)
    server = live_server(small_disk / "store", max_size=None, min_free=MinFree(nbytes=10 << 20))
    client = Client(server)
    assert free_space(store.root)[0] < 10 << 20
    body = b"new" * 50_000
    assert client.put_object(body) == 201
    deadline = time.monotonic() + 30
    while free_space(store.root)[0] < 10 << 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert free_space(store.root)[0] >= 10 << 20
    gone = [k for k in old if store.get("default", k) is None]
    assert gone == old[: len(gone)] and 0 < len(gone) < len(old)
    assert Path(store.path(sha(body))).exists(), "just written: kept"
    metrics = client("GET", "/metrics")[2].decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(metrics) for s in f.samples}
    assert samples["gocaas_cache_server_disk_min_free_bytes"] == 10 << 20
    assert samples["gocaas_cache_server_disk_free_bytes"] == free_space(store.root)[0]


def test_keep_alive_and_connection_reuse(client: Client) -> None:
    for _ in range(50):
        assert client("GET", f"/v1/cas/{OID}")[0] == 404
    assert client.conn.sock is not None, "one connection for all of them"


def test_listen_and_usage() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen("8080")
    assert server_main(["--listen", "nonsense"]) == 2
    with pytest.raises(ValueError, match="port from 0 to 65535"):
        parse_listen("127.0.0.1:99999")


def test_a_bad_min_free_is_refused_before_listening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--listen", "127.0.0.1:0", "--token", "t", "--dir", str(tmp_path / "store")]
    assert server_main([*argv, "--min-free", "120%"]) == 2
    assert "bad free space '120%': a percentage must be from 0 to below 100" in capsys.readouterr().err
    assert not (tmp_path / "store").exists(), "nothing made"


def test_listen_on_a_taken_port_says_which(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--listen", f"127.0.0.1:{port}", "--token", "t", "--dir", str(tmp_path / "store")]
        assert server_main(argv) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


# -- the HTTP client as a Backend: the contract the local Store meets too


@pytest.fixture(params=["store", "http"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, live_server: Callable[..., LiveServer]
) -> Iterator[Any]:
    if request.param == "store":
        yield Store(tmp_path / "store")
        return
    server = live_server()
    remote = HTTPRemote(server.url, TOKEN)
    yield remote
    remote.close()


def test_backend_contract(backend: Any) -> None:
    assert isinstance(backend, Backend)
    aid = sha(b"contract")
    assert backend.get("default", aid) is None
    assert backend.has(sha(BODY)) is False and backend.open(sha(BODY)) is None
    entry = backend.put("default", aid, sha(BODY), BODY)
    assert entry.output_id == sha(BODY) and entry.size == len(BODY)
    got = backend.get("default", aid)
    assert got is not None and (got.output_id, got.size) == (sha(BODY), len(BODY))
    assert backend.get("other", aid) is None
    assert backend.has(sha(BODY)) is True
    with backend.open(sha(BODY)) as f:
        assert f.read() == BODY
    with pytest.raises(Exception, match="hash"):
        backend.put("default", sha(b"x"), sha(b"not this"), b"this")


def test_client_errors(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    with pytest.raises(RemoteError) as e:
        HTTPRemote(server.url, "wrong").has(sha(BODY))
    assert e.value.status == 401 and not isinstance(e.value, RemoteRefused), "401 counts against the remote"
    with pytest.raises(RemoteRefused) as refused:
        HTTPRemote(server.url, TOKEN).put_entry("default", sha(b"a"), Entry(sha(b"missing"), 3, 1))
    assert refused.value.status == 409
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RemoteError, match="ConnectionRefused"):
        HTTPRemote(f"http://127.0.0.1:{port}", TOKEN).get("default", sha(b"a"))
    with pytest.raises(ValueError, match="http"):
        HTTPRemote("ftp://example", TOKEN)
