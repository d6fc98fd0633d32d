"""The API end to end against a real server: submit (both forms), follow, download and verify, results."""

from __future__ import annotations

import hashlib
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gocaas.server.app import worker_settings
from gocaas.settings import Settings
from tests.conftest import EXAMPLES, skip_or_fail
from tests.server.conftest import ServerFactory
from tests.support.server import ServerProcess, slow_module, upload, wait_finished

MULTI_SPEC = json.dumps({"coverage": True, "targets": ["linux/amd64", "linux/arm64"]})


@pytest.fixture(scope="module")
def hello_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/hello as a git repository (the test server accepts local git URLs)."""
    repo = tmp_path_factory.mktemp("hello-repo")
    subprocess.run(["cp", "-r", f"{EXAMPLES / 'hello'}/.", str(repo)], check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.test"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "hello"], check=True)
    return repo


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> httpx.Client:
    return server.client(server.admin_token)


@pytest.fixture(scope="module")
def tested_build(admin: httpx.Client) -> dict[str, Any]:
    """examples/multi (two commands, a tested package) uploaded with coverage, two targets, finished."""
    response = upload(admin, EXAMPLES / "multi", MULTI_SPEC)
    assert response.status_code == 202, response.text
    return wait_finished(admin, response.json()["build_id"])


def test_compat_form_builds_a_git_ref_and_serves_the_binary(admin: httpx.Client, hello_repo: Path) -> None:
    response = admin.post(
        "/v1/build",
        json={
            "git_url": f"file://{hello_repo}",
            "ref": "main",
            "go_version": None,
            "target_os": "linux",
            "target_arch": "arm64",
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) >= {"build_id", "status_url", "artifact_url"}
    view = wait_finished(admin, body["build_id"])
    assert view["status"] == "succeeded", view
    assert view["targets"] == ["linux/arm64"]
    assert [s["status"] for s in view["stages"] if s["name"] == "test"] == ["skipped"]
    binary = admin.get(body["artifact_url"])
    assert binary.status_code == 200
    assert binary.headers["etag"] == f'"{hashlib.sha256(binary.content).hexdigest()}"'
    assert binary.content[:4] == b"\x7fELF"


def test_upload_reports_tests_junit_and_coverage(admin: httpx.Client, tested_build: dict[str, Any]) -> None:
    assert tested_build["status"] == "succeeded", tested_build
    build_id = tested_build["id"]
    report = admin.get(f"/v1/builds/{build_id}/report").json()
    assert report["build_id"] == build_id
    assert report["tests"]["summary"]["passed"] >= 1
    junit = ET.fromstring(admin.get(f"/v1/builds/{build_id}/junit").content)
    assert junit.tag == "testsuites"
    assert int(junit.get("tests", "0")) == report["tests"]["summary"]["total"]
    profile = admin.get(f"/v1/builds/{build_id}/coverage")
    assert profile.status_code == 200 and profile.text.startswith("mode:")
    html = admin.get(f"/v1/builds/{build_id}/coverage", params={"format": "html"})
    assert html.status_code == 200 and "<html" in html.text.lower()


def test_artifacts_are_checksummed_with_etag_and_ranges(
    admin: httpx.Client, tested_build: dict[str, Any]
) -> None:
    build_id = tested_build["id"]
    listed = admin.get(f"/v1/builds/{build_id}/artifacts").json()
    binaries = {a["name"]: a for a in listed if a["kind"] == "binary"}
    assert {(a["goos"], a["goarch"]) for a in binaries.values()} == {("linux", "amd64"), ("linux", "arm64")}
    assert len(binaries) == 4  # two commands, two targets
    for artifact in binaries.values():
        whole = admin.get(artifact["url"])
        assert whole.status_code == 200
        assert hashlib.sha256(whole.content).hexdigest() == artifact["sha256"]
        assert len(whole.content) == artifact["size"]
        part = admin.get(artifact["url"], headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.content == whole.content[100:200]
        cached = admin.get(artifact["url"], headers={"If-None-Match": whole.headers["etag"]})
        assert cached.status_code == 304 and cached.content == b""
        for weakly in (f"W/{whole.headers['etag']}", '"other", *'):  # RFC 9110: both match
            assert admin.get(artifact["url"], headers={"If-None-Match": weakly}).status_code == 304
        head = admin.head(artifact["url"])
        assert head.status_code == 200 and head.content == b""
        assert head.headers["x-checksum-sha256"] == artifact["sha256"]
        assert int(head.headers["content-length"]) == artifact["size"]
    assert admin.get(f"/v1/builds/{build_id}/artifacts/nope").status_code == 404
    # Several binaries: the single-artifact URL says which to pick instead of guessing.
    ambiguous = admin.get(f"/v1/builds/{build_id}/artifact")
    assert ambiguous.status_code == 409
    assert all(name in ambiguous.json()["error"] for name in binaries)


def _sse_events(response: httpx.Response) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if current:
                events.append(current)
                current = {}
            continue
        key, _, value = line.partition(": ")
        current[key] = current[key] + "\n" + value if key == "data" and key in current else value
    return events


def test_log_whole_and_as_a_resumable_event_stream(admin: httpx.Client, tested_build: dict[str, Any]) -> None:
    build_id = tested_build["id"]
    whole = admin.get(f"/v1/builds/{build_id}/log")
    assert whole.status_code == 200
    assert "==> vet" in whole.text and "<== package ok" in whole.text
    with admin.stream(
        "GET", f"/v1/builds/{build_id}/log", headers={"Accept": "text/event-stream"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(response)
    logs = [e for e in events if e.get("event") == "log"]
    assert "".join(e["data"] + "\n" for e in logs) == whole.text
    assert events[-1]["event"] == "end"
    assert json.loads(events[-1]["data"]) == {"status": "succeeded", "exit_code": 0}
    resume = {"Accept": "text/event-stream", "Last-Event-ID": logs[0]["id"]}
    with admin.stream("GET", f"/v1/builds/{build_id}/log", headers=resume) as response:
        resumed = [e for e in _sse_events(response) if e.get("event") == "log"]
    assert [e["id"] for e in resumed] == [e["id"] for e in logs[1:]]
    # An id the server never sent starts over: past SQLite's integers, or a digit that is not ASCII ("²").
    for odd in (b"9" * 25, b"\xb2"):  # bytes: httpx sends str header values as ASCII only
        restart = {b"Accept": b"text/event-stream", b"Last-Event-ID": odd}
        with admin.stream("GET", f"/v1/builds/{build_id}/log", headers=restart) as response:
            assert response.status_code == 200
            again = [e for e in _sse_events(response) if e.get("event") == "log"]
        assert [e["id"] for e in again] == [e["id"] for e in logs]


def test_identical_upload_is_answered_from_the_result_cache(
    admin: httpx.Client, tested_build: dict[str, Any]
) -> None:
    again = upload(admin, EXAMPLES / "multi", MULTI_SPEC)
    assert again.status_code == 202
    view = wait_finished(admin, again.json()["build_id"])
    assert view["status"] == "succeeded"
    assert view["reused_from"] == tested_build["id"]
    assert view["id"] != tested_build["id"]


def test_idempotency_key_returns_the_first_build(admin: httpx.Client, hello_repo: Path) -> None:
    body = {"source": {"git_url": f"file://{hello_repo}", "ref": "main"}, "tests": False, "vet": False}
    first = admin.post("/v1/builds", json=body, headers={"Idempotency-Key": "deploy-42"})
    second = admin.post("/v1/builds", json=body | {"priority": 9}, headers={"Idempotency-Key": "deploy-42"})
    assert first.status_code == second.status_code == 202
    assert second.json()["build_id"] == first.json()["build_id"]
    assert (first.json()["existing"], second.json()["existing"]) == (False, True)
    view = wait_finished(admin, first.json()["build_id"])
    # Still the same build after it finished: the key names it for good.
    third = admin.post("/v1/builds", json=body, headers={"Idempotency-Key": "deploy-42"})
    assert third.json()["build_id"] == view["id"]


def test_listing_pages_through_the_callers_builds(
    admin: httpx.Client, tested_build: dict[str, Any], hello_repo: Path
) -> None:
    extra = [
        admin.post(
            "/v1/builds",
            json={
                "source": {"git_url": f"file://{hello_repo}"},
                "tests": False,
                "vet": False,
                "version": f"v0.{i}",
            },
        ).json()["build_id"]
        for i in range(2)
    ]
    everything = admin.get("/v1/builds", params={"limit": 200}).json()["builds"]
    assert len(everything) >= 3
    seen: list[str] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"before": before} if before else {})
        page = admin.get("/v1/builds", params=params).json()
        seen += [b["id"] for b in page["builds"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == [b["id"] for b in everything] == sorted(seen, reverse=True)
    succeeded = admin.get("/v1/builds", params={"status": "succeeded"}).json()["builds"]
    assert succeeded and all(b["status"] == "succeeded" for b in succeeded)
    assert admin.get("/v1/builds", params={"status": "bogus"}).status_code == 422
    for build_id in extra:
        wait_finished(admin, build_id)


def test_metrics_count_builds_stages_and_the_queue(
    server: ServerProcess, tested_build: dict[str, Any]
) -> None:
    text = httpx.get(f"{server.url}/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    finished = samples[("gocaas_builds_finished_total", (("failure_class", ""), ("status", "succeeded")))]
    assert finished >= 1
    assert samples[("gocaas_stage_duration_seconds_count", (("stage", "test"), ("status", "ok")))] >= 1
    assert samples[("gocaas_queue_depth", ())] == 0
    assert samples[("gocaas_workers", ())] == 1
    assert 0 <= samples[("gocaas_worker_utilisation", ())] <= 1
    assert 0 <= samples[("gocaas_cache_hit_ratio", ())] <= 1


def test_health_and_openapi(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.head(f"{server.url}/healthz").status_code == 200  # load balancers probe with HEAD
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ok" and ready["workers"] == 1
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/build", "/v1/builds", "/v1/builds/{build_id}/log"} <= set(spec["paths"])
    operation_ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids))  # generated clients need them unique
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_uploads_of_one_module_share_a_workspace(
    server: ServerProcess, admin: httpx.Client, tmp_path: Path
) -> None:
    # go's test cache keys files by absolute path: a fresh directory per upload would make every test rerun.
    before = {p.name for p in (server.home / "workspaces").glob("*") if p.is_dir()}
    module = slow_module(tmp_path / "m", "sameworkspace", 0)
    views = []
    for version in ("one", "two"):
        (module / "version.go").write_text(f'package main\n\nconst version = "{version}"\n')
        response = upload(admin, module, '{"targets": ["linux/amd64"]}')
        views.append(wait_finished(admin, response.json()["build_id"]))
    assert [v["status"] for v in views] == ["succeeded", "succeeded"]
    assert views[1]["reused_from"] is None  # different content: really built
    after = {p.name for p in (server.home / "workspaces").glob("*") if p.is_dir()}
    assert len(after - before) == 1
    second = admin.get(f"/v1/builds/{views[1]['id']}/report").json()
    [test_package] = second["tests"]["packages"]
    assert test_package["package"] == "example.test/sameworkspace"


def test_the_workers_share_the_default_memory_limit(make_server: ServerFactory, settings: Settings) -> None:
    """Two builds at once: each may use half of the default (3/4 of the machine's), unless it is set."""
    assert worker_settings(settings, 1) is settings
    explicit = settings.model_copy(update={"build_memory_limit": 1 << 30})
    assert worker_settings(explicit, 4) is explicit, "a limit the operator set is kept"

    server = make_server(workers=2)
    admin = server.client(server.admin_token)
    response = upload(admin, EXAMPLES / "hello", json.dumps({"targets": ["linux/amd64"]}))
    assert response.status_code == 202, response.text
    view = wait_finished(admin, response.json()["build_id"])
    assert view["status"] == "succeeded", view
    report = admin.get(f"/v1/builds/{view['id']}/report").json()
    if report["limits"] is None:
        skip_or_fail("build cgroups are not available here")
    assert report["limits"]["memory_bytes"] == settings.effective_build_memory_limit(2)
    assert report["limits"]["memory_bytes"] < settings.effective_build_memory_limit(1)
