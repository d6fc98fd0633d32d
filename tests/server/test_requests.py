"""Bad requests get a 4xx naming the field; admission control answers 429/503 with Retry-After; a queued
build says why it waits. The server here runs no workers, so builds stay queued."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gocaas.server.intake import fingerprint
from gocaas.settings import Settings
from gocaas.spec import BuildOptions, BuildSpec, SourceKind, SourceSpec, Target
from tests.conftest import EXAMPLES
from tests.server.conftest import ServerFactory
from tests.support.server import ServerProcess, server_home, upload


@pytest.fixture(scope="module")
def strict(make_server: ServerFactory) -> ServerProcess:
    return make_server(
        workers=0,
        server_allow_local_git=False,
        server_git_hosts=("git.example.test",),
        server_max_upload_bytes=200_000,
        server_max_queued=4,
        server_max_queued_per_tenant=2,
    )


@pytest.fixture(scope="module")
def client(strict: ServerProcess) -> httpx.Client:
    return strict.client(strict.admin_token)


COMPAT = {
    "git_url": "https://git.example.test/m.git",
    "ref": "main",
    "target_os": "linux",
    "target_arch": "amd64",
}


COMPAT_SOURCE = {"git_url": COMPAT["git_url"], "ref": "main"}


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"colour": "red"}, "colour", "unknown field"),
        ({"target_os": "../../x"}, "target_os", "pattern"),
        ({"target_arch": ""}, "target_arch", "pattern"),
        ({"go_version": "banana"}, "go_version", "banana"),
        ({"ref": "--upload-pack=evil"}, "ref", "git ref"),
        ({"git_url": "file:///etc"}, "git_url", "local paths and file:// URLs are not accepted"),
        ({"git_url": "/srv/repos/m"}, "git_url", "local paths"),
        ({"git_url": "https://evil.example.org/m.git"}, "git_url", "host 'evil.example.org' is not allowed"),
        ({"git_url": "ext::sh -c touch% /tmp/pwned"}, "git_url", "whitespace"),
        ({"git_url": "-oProxyCommand=x"}, "git_url", "starts with '-'"),
        ({"git_url": "ftp://git.example.test/m.git"}, "git_url", "scheme 'ftp' is not allowed"),
    ],
)
def test_compat_form_names_the_bad_field(
    client: httpx.Client, change: dict[str, Any], field: str, words: str
) -> None:
    response = client.post("/v1/build", json=COMPAT | change)
    assert response.status_code in (400, 422), response.text
    body = response.json()
    assert body["field"] == field, body
    assert words in body["error"], body


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            {"source": {"git_url": "https://git.example.test/m.git"}, "targets": ["../../x"]},
            "targets",
            "not a target",
        ),
        (
            {"source": {"git_url": "https://git.example.test/m.git"}, "priority": 10},
            "priority",
            "less than or equal",
        ),
        (
            {"source": {"git_url": "https://git.example.test/m.git"}, "version": "1.0 -X x"},
            "version",
            "version",
        ),
        (
            {"source": {"git_url": "https://git.example.test/m.git", "branch": "x"}},
            "source.branch",
            "unknown",
        ),
        ({"targets": ["linux/amd64"]}, "source", "required"),
        (
            {"source": {"git_url": "https://git.example.test/m.git"}, "timeout": 1e9},
            "timeout",
            "over this server",
        ),
        (
            {"source": {"git_url": "https://git.example.test/m.git"}, "timeout": -1},
            "timeout",
            "greater than 0",
        ),
        # a trailing newline got past `re.match(...$)`, and on to git and the linker
        ({"source": {"git_url": "https://git.example.test/m.git", "ref": "main\n"}}, "source.ref", "ref"),
        ({"source": {"git_url": "https://git.example.test/m.git"}, "version": "1.0\n"}, "version", "version"),
        # no coercion: "yes" is not a bool, "5" not a number
        ({"source": {"git_url": "https://git.example.test/m.git"}, "vet": "yes"}, "vet", "valid boolean"),
        ({"source": {"git_url": "https://git.example.test/m.git"}, "priority": "5"}, "priority", "integer"),
        ({"source": {"git_url": "https://git.example.test/m.git"}, "timeout": "10"}, "timeout", "number"),
    ],
)
def test_full_form_names_the_bad_field(
    client: httpx.Client, body: dict[str, Any], field: str, words: str
) -> None:
    response = client.post("/v1/builds", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert words in response.json()["error"]


def test_malformed_json_and_content_type(client: httpx.Client) -> None:
    broken = client.post("/v1/builds", content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 422 and "JSON" in broken.json()["error"]
    odd = client.post("/v1/builds", content=b"x", headers={"Content-Type": "text/plain"})
    assert odd.status_code == 415 and "text/plain" in odd.json()["error"]


def _tar(entries: dict[str, bytes], hard_links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (hard_links or {}).items():
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.LNKTYPE, target
            tar.addfile(link)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("archive", "words"),
    [
        (b"\x1f\x8b\x08\x00garbage-not-really-gzip", "corrupt"),
        (b"just some text", "not a .tar.gz or .zip"),
        (_tar({"README": b"hi"}), "go.mod"),
        (_tar({"go.mod": b"module x\n", "../escape.go": b"package x"}), "escape"),
        # these three were 500s with tracebacks (the first one thousands of lines of them)
        (_tar({"go.mod": b"module x\n", "d/" * 1500 + "f.go": b"package d"}), "levels deep"),
        (_tar({"go.mod": b"module x\n"}, hard_links={"h": "nothere"}), "not a file before it"),
        (_tar({"go.mod": b"module caf\xe9\n"}), "not UTF-8"),
        (_tar({"go.mod": b"module " + b"a" * 600 + b"\n"}), "not usable"),  # its upload was kept
    ],
)
def test_bad_archives_are_refused_with_the_reason(
    client: httpx.Client, strict: ServerProcess, archive: bytes, words: str
) -> None:
    response = client.post("/v1/builds", files={"archive": ("m.tar.gz", archive)}, data={"spec": "{}"})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "archive"
    assert words in response.json()["error"]
    assert list((strict.home / "uploads").glob("*.*")) == []  # nothing kept


def test_oversized_json_and_an_empty_idempotency_key(client: httpx.Client) -> None:
    body = {"source": {"git_url": "https://git.example.test/m.git"}, "version": "x" * (2 << 20)}
    big = client.post("/v1/builds", json=body)
    assert big.status_code == 413 and "request body over" in big.json()["error"], big.text
    compat = client.post("/v1/build", json=COMPAT | {"ref": "r" * (2 << 20)})
    assert compat.status_code == 413, compat.text
    empty_key = client.post("/v1/builds", json={"source": COMPAT_SOURCE}, headers={"Idempotency-Key": ""})
    assert empty_key.status_code == 422 and empty_key.json()["field"] == "Idempotency-Key", empty_key.text


def test_oversized_upload_and_bad_spec_part(client: httpx.Client, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    (big / "go.mod").write_text("module example.test/big\n\ngo 1.21\n")
    (big / "blob.bin").write_bytes(os.urandom(300_000))
    response = upload(client, big)
    assert response.status_code == 413 and "200000" in response.json()["error"]
    spec = upload(client, EXAMPLES / "hello", '{"targets": ["windows/../../x"]}')
    assert spec.status_code == 422 and spec.json()["field"] == "targets"
    broken = upload(client, EXAMPLES / "hello", "{not json")
    assert broken.status_code == 422 and broken.json()["field"] == "spec", broken.text  # was "body"
    both = upload(
        client, EXAMPLES / "hello", json.dumps({"source": {"git_url": "https://git.example.test/m"}})
    )
    assert both.status_code == 422 and both.json()["field"] == "source"


def _read_response(sock: socket.socket) -> str:
    """One HTTP response with a Content-Length body: its head and body may come in separate reads."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _content_length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _content_length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def test_a_chunked_upload_is_cut_off_at_the_limit(strict: ServerProcess) -> None:
    """No Content-Length to refuse it by: past the limit (plus the multipart slack) the server answers 413
    without waiting for the rest, instead of spooling the whole body first. The client sends 2 MB of a
    chunked body that never ends and then only listens: without the cut-off, no answer would come."""
    boundary = "gocaas-test-boundary"
    head = (
        f"POST /v1/builds HTTP/1.1\r\nHost: 127.0.0.1:{strict.port}\r\n"
        f"Authorization: Bearer {strict.admin_token}\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; filename="m.tar.gz"\r\n'
            "Content-Type: application/gzip\r\n\r\n"
        ).encode()
        + b"\x1f\x8b"
        + b"x" * (2 << 20)
    )
    with socket.create_connection(("127.0.0.1", strict.port), timeout=30) as sock:
        sock.sendall(head + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        answer = _read_response(sock)
    status_line = answer.split("\r\n", 1)[0]
    assert status_line.endswith("413 Request Entity Too Large") or " 413 " in status_line, answer[:300]
    assert "limit of 200000 bytes" in answer  # the configured limit, not it plus the framing slack
    assert httpx.get(f"{strict.url}/healthz").status_code == 200
    assert list((strict.home / "uploads").glob("*")) == []


def test_queue_bounds_per_tenant_and_overall(strict: ServerProcess, client: httpx.Client) -> None:
    def submit(c: httpx.Client, ref: str) -> httpx.Response:
        return c.post("/v1/build", json=COMPAT | {"ref": ref})

    ids = [submit(client, f"v1.0.{i}").json()["build_id"] for i in range(2)]
    full = submit(client, "v1.0.2")
    assert full.status_code == 429 and full.headers["Retry-After"].isdigit()
    assert "your tenant's build queue is full" in full.json()["error"]
    # An identical request is not new work: it returns the queued build even when the queue is full.
    same = submit(client, "v1.0.0")
    assert same.status_code == 202 and same.json()["build_id"] == ids[0] and same.json()["existing"]
    other = strict.client(strict.token("other"))
    assert submit(other, "v2.0.0").status_code == 202
    assert submit(other, "v2.0.1").status_code == 202
    overall = submit(strict.client(strict.token("third")), "v3.0.0")
    assert overall.status_code == 503 and overall.headers["Retry-After"].isdigit()
    assert "the build queue is full" in overall.json()["error"]

    # A queued build says where it stands and why it waits.
    view = client.get(f"/v1/builds/{ids[1]}").json()
    assert view["status"] == "queued"
    assert view["queue_position"] == 2
    assert "no worker can take it" in view["waiting_reason"]

    # Cancelling a queued build frees its place.
    cancelled = client.post(f"/v1/builds/{ids[0]}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert submit(client, "v1.0.3").status_code == 202
    assert client.post(f"/v1/builds/{ids[0]}/cancel").json()["status"] == "cancelled"  # idempotent


def test_priority_and_aging_order_the_queue(make_server: ServerFactory) -> None:
    server = make_server(workers=0, server_aging_seconds=3600)
    client = server.client(server.admin_token)
    low = client.post("/v1/builds", json={"source": {"git_url": "https://h/low.git"}, "priority": 0})
    high = client.post("/v1/builds", json={"source": {"git_url": "https://h/high.git"}, "priority": 9})
    mid = client.post("/v1/builds", json={"source": {"git_url": "https://h/mid.git"}})
    positions = {
        name: client.get(f"/v1/builds/{r.json()['build_id']}").json()["queue_position"]
        for name, r in (("low", low), ("high", high), ("mid", mid))
    }
    assert positions == {"high": 1, "mid": 2, "low": 3}


def test_cancelling_a_queued_upload_removes_it_and_a_finished_build_answers_200(
    make_server: ServerFactory,
) -> None:
    server = make_server(workers=0)
    client = server.client(server.admin_token)
    submitted = upload(client, EXAMPLES / "hello")
    assert submitted.status_code == 202, submitted.text
    build_id = submitted.json()["build_id"]
    assert len(list((server.home / "uploads").glob(f"{build_id}.*"))) == 1
    cancelled = client.post(f"/v1/builds/{build_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert list((server.home / "uploads").glob(f"{build_id}.*")) == []  # no executor will ever remove it
    again = client.post(f"/v1/builds/{build_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_a_different_timeout_is_a_different_build() -> None:
    # A request for a longer timeout must not be handed a queued build that will stop sooner.
    source = SourceSpec(kind=SourceKind.GIT, location="https://git.example.test/m.git")
    spec = BuildSpec(source=source, options=BuildOptions(targets=(Target.parse("linux/amd64"),)))
    assert fingerprint(spec, 1) == fingerprint(spec, 1) != fingerprint(spec, 2)
    assert fingerprint(spec, 1, timeout_s=60) == fingerprint(spec, 1, timeout_s=60)
    timeouts = (None, 60.0, 120.0)
    assert len({fingerprint(spec, 1, timeout_s=t) for t in timeouts}) == len(timeouts)


def test_an_upload_to_a_server_out_of_disk_space_is_refused_and_leaves_nothing(
    make_server: ServerFactory, settings: Settings, small_disk: Path, tmp_path: Path
) -> None:
    """507 Insufficient Storage with a Retry-After, not a 500 that blames a bug; the part written is removed,
    and the server takes the upload once there is room again."""
    server = make_server(workers=0, home=server_home(small_disk, settings))
    try:
        client = server.client(server.admin_token)
        module = tmp_path / "big"
        module.mkdir()
        (module / "go.mod").write_text("module example.test/big\n\ngo 1.21\n")
        (module / "main.go").write_text("package main\n\nfunc main() {}\n")
        (module / "data.bin").write_bytes(os.urandom(1 << 20))  # does not compress: a 1 MiB upload
        filler = small_disk / "filler"
        with filler.open("wb") as f:
            f.write(b"\0" * (shutil.disk_usage(small_disk).free - (512 << 10)))
        text = client.get("/metrics").text  # what an operator's alert would have seen
        gauges = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
        assert abs(gauges["gocaas_data_disk_free_bytes"] - shutil.disk_usage(small_disk).free) <= 64 << 10
        assert gauges["gocaas_data_disk_min_free_bytes"] == int((16 << 20) * 0.05)  # cache_min_free: 5%
        response = upload(client, module)
        assert response.status_code == 507, response.text
        assert response.json()["error"] == "the server is out of disk space; try again later"
        assert response.headers["Retry-After"] == "60"
        uploads = small_disk / "home" / "uploads"
        assert not uploads.exists() or list(uploads.iterdir()) == [], "the part written was removed"
        filler.unlink()
        again = upload(client, module)
        assert again.status_code == 202, again.text
        assert client.get(f"/v1/builds/{again.json()['build_id']}").status_code == 200
    finally:
        server.stop()
