"""Retention: finished builds past server_keep_days disappear from the API and the disk; the result cache
still answers an identical build."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from gocaas.settings import Settings
from gocaas.store import open_store
from gocaas.store.builds import BuildRepo, NewBuild
from gocaas.store.tenants import TenantRepo
from tests.conftest import EXAMPLES, CliFn
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


def test_builds_prune_forgets_old_command_line_builds_but_not_queued_ones(
    cli: CliFn, fresh_settings: Callable[..., Settings]
) -> None:
    settings = fresh_settings()
    built = cli("build", str(EXAMPLES / "hello"), "--no-test", "--json", "--out", "dist", settings_=settings)
    assert built.returncode == 0, built.stderr
    old_cli_build = settings.builds_dir / json.loads(built.stdout)["build_id"]
    recent = settings.builds_dir / "20990101T000000-0000000a"
    recent.mkdir()
    unrelated = settings.builds_dir / "notes"
    unrelated.mkdir()
    with open_store(settings.db_url) as store:
        tenant_id = TenantRepo(store).create_token("t").principal.tenant_id
        spec = '{"queued": true}'
        BuildRepo(store).submit(
            NewBuild("20200101T000000-0000000b", tenant_id, spec, "fp", 5),
            max_queued=9,
            max_queued_per_tenant=9,
        )
    queued_dir = settings.builds_dir / "20200101T000000-0000000b"
    queued_dir.mkdir()
    forty_days_ago = time.time() - 40 * 86400
    for path in (old_cli_build, unrelated, queued_dir):
        os.utime(path, (forty_days_ago, forty_days_ago))

    pruned = cli("builds", "prune", settings_=settings)
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned 0 service builds and 1 command-line build directories" in pruned.stderr
    assert not old_cli_build.exists()
    assert recent.is_dir() and unrelated.is_dir() and queued_dir.is_dir()
    # 0 or any tiny number forgets every finished build; inf overflowed the date arithmetic
    for days in ("0", "1e-300", "inf", "nan"):
        refused = cli("builds", "prune", "--older-than", days, settings_=settings)
        assert refused.returncode == 2 and f"--older-than {days}" in refused.stderr, refused.stderr
    assert recent.is_dir()
