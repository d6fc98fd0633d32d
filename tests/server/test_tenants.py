"""Tenants: a token sees only its own tenant's builds; another tenant's build answers exactly like none."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLES
from tests.support.server import ServerProcess, upload, wait_finished


@pytest.fixture(scope="module")
def team_a_build(server: ServerProcess) -> tuple[str, dict[str, Any]]:
    token = server.token("team-a")
    client = server.client(token)
    response = upload(client, EXAMPLES / "multi", '{"coverage": true, "targets": ["linux/amd64"]}')
    assert response.status_code == 202, response.text
    view = wait_finished(client, response.json()["build_id"])
    assert view["status"] == "succeeded", server.log()
    return token, view


@pytest.fixture(scope="module")
def other_token(server: ServerProcess) -> str:
    return server.token("team-b")


ENDPOINTS = [
    ("GET", ""),
    ("GET", "/log"),
    ("GET", "/artifacts"),
    ("GET", "/artifacts/greet_linux_amd64"),
    ("GET", "/artifact"),
    ("GET", "/report"),
    ("GET", "/junit"),
    ("GET", "/coverage"),
    ("POST", "/cancel"),
]


@pytest.mark.parametrize(("method", "suffix"), ENDPOINTS)
def test_another_tenants_build_is_not_found(
    server: ServerProcess,
    team_a_build: tuple[str, dict[str, Any]],
    other_token: str,
    method: str,
    suffix: str,
) -> None:
    owner_token, view = team_a_build
    url = f"/v1/builds/{view['id']}{suffix}"
    other = server.client(other_token).request(method, url)
    missing = server.client(owner_token).request(method, f"/v1/builds/20990101T000000-00000000{suffix}")
    assert other.status_code == 404
    assert other.json()["error"] == missing.json()["error"].replace("20990101T000000-00000000", view["id"])
    if method == "GET" and suffix in ("", "/report", "/artifacts/greet_linux_amd64"):
        assert server.client(owner_token).request(method, url).status_code == 200


def test_listing_shows_only_the_callers_builds(server: ServerProcess, team_a_build: tuple[str, Any]) -> None:
    owner_token, view = team_a_build
    mine = server.client(owner_token).get("/v1/builds").json()["builds"]
    theirs = server.client(server.token("team-c")).get("/v1/builds").json()["builds"]
    assert view["id"] in [b["id"] for b in mine]
    assert theirs == []


def test_missing_bad_and_revoked_tokens_are_refused(server: ServerProcess) -> None:
    anonymous = httpx.get(f"{server.url}/v1/builds")
    assert anonymous.status_code == 401 and "bearer token" in anonymous.json()["error"]
    wrong = server.client("gcs_not-a-real-token").get("/v1/builds")
    assert wrong.status_code == 401 and wrong.json()["error"] == "unknown or revoked token"
    token = server.token("team-d")
    assert server.client(token).get("/v1/builds").status_code == 200
    subprocess.run(
        [sys.executable, "-m", "gocaas", "token", "revoke", token], env=server.env, check=True, timeout=60
    )
    deadline = time.monotonic() + 15  # the server remembers a token lookup for a few seconds
    while server.client(token).get("/v1/builds").status_code == 200:
        assert time.monotonic() < deadline, "a revoked token still works"
        time.sleep(0.5)
    assert server.client(token).get("/v1/builds").status_code == 401


def test_tenants_build_in_their_own_cache_namespace(
    server: ServerProcess, team_a_build: tuple[str, Any]
) -> None:
    # The result cache is per tenant: team-e's identical upload is built, not reused from team-a's.
    client = server.client(server.token("team-e"))
    response = upload(client, EXAMPLES / "multi", '{"coverage": true, "targets": ["linux/amd64"]}')
    view = wait_finished(client, response.json()["build_id"])
    assert view["status"] == "succeeded"
    assert view["reused_from"] is None
    assert (server.home / "results" / "team-e").is_dir() and (server.home / "results" / "team-a").is_dir()
