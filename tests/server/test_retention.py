"""Retention: finished builds past server_keep_days disappear from the API and the disk; the result cache
still answers an identical build."""

from __future__ import annotations

import time

from tests.conftest import EXAMPLES
from tests.server.conftest import ServerFactory
from tests.support.server import upload, wait_finished


def test_old_finished_builds_are_pruned(make_server: ServerFactory) -> None:
    # Kept for ~5 s, pruned every second: long enough to read the build, short enough for a test.
    server = make_server(workers=1, server_keep_days=5 / 86400, server_prune_interval=1)
    client = server.client(server.admin_token)
    first = wait_finished(client, upload(client, EXAMPLES / "hello", '{"tests": false}').json()["build_id"])
    assert first["status"] == "succeeded"
    assert (server.home / "builds" / first["id"] / "report.json").is_file()
    assert client.get(f"/v1/builds/{first['id']}/artifacts").json()

    deadline = time.monotonic() + 30
    while client.get(f"/v1/builds/{first['id']}").status_code != 404:
        assert time.monotonic() < deadline, "the build was never pruned"
        time.sleep(0.5)
    assert not (server.home / "builds" / first["id"]).exists()
    assert first["id"] not in [b["id"] for b in client.get("/v1/builds").json()["builds"]]
    assert client.get(f"/v1/builds/{first['id']}/log").status_code == 404

    again = wait_finished(client, upload(client, EXAMPLES / "hello", '{"tests": false}').json()["build_id"])
    assert again["status"] == "succeeded" and again["reused_from"] == first["id"]
    artifact = client.get(f"/v1/builds/{again['id']}/artifacts").json()[0]
    assert client.get(artifact["url"]).status_code == 200
