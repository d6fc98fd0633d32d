"""Nothing accepted is lost: queued builds survive a restart, a killed worker's build is re-run, a build
running when the server died is retried; cancel kills the build's processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLES
from tests.server.conftest import ServerFactory
from tests.support.server import ServerProcess, slow_module, upload, wait_finished, wait_until


def _processes() -> dict[int, str]:
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return found


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def _workers(server: ServerProcess) -> list[int]:
    assert server.process is not None
    return [
        pid
        for pid, cmdline in _processes().items()
        if "multiprocessing.spawn" in cmdline
        and "resource_tracker" not in cmdline
        and _parent(pid) == server.process.pid
    ]


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rfind(")") + 2]


def _test_binaries(name: str) -> list[int]:
    return [pid for pid, cmdline in _processes().items() if f"{name}.test" in cmdline]


def _testing_slowly(
    make_server: ServerFactory, tmp_path: Path, name: str, seconds: float
) -> tuple[ServerProcess, httpx.Client, str]:
    """A one-worker server running a build whose test takes `seconds`, once it is in the test stage."""
    server = make_server(workers=1)
    client = server.client(server.admin_token)
    module = slow_module(tmp_path / "slow", name, seconds)
    build_id = upload(client, module, '{"targets": ["linux/amd64"]}').json()["build_id"]
    wait_until(client, build_id, lambda v: v["stage"] == "test")
    return server, client, build_id


def test_queued_builds_survive_a_restart(make_server: ServerFactory, tmp_path: Path) -> None:
    paused = make_server(workers=0)
    client = paused.client(paused.admin_token)
    ids = []
    for i in range(3):
        module = slow_module(tmp_path / f"q{i}", f"queued{i}", 0)
        ids.append(upload(client, module, '{"targets": ["linux/amd64"]}').json()["build_id"])
    paused.stop()

    resumed = ServerProcess(paused.env, paused.home, workers=1, admin_token=paused.admin_token).start()
    try:
        client = resumed.client(resumed.admin_token)
        views = [wait_finished(client, build_id) for build_id in ids]
        assert [v["status"] for v in views] == ["succeeded"] * 3, resumed.log()
        assert all(v["attempts"] == 1 for v in views)
    finally:
        resumed.stop()


def test_a_killed_worker_is_replaced_and_its_build_rerun(make_server: ServerFactory, tmp_path: Path) -> None:
    server, client, build_id = _testing_slowly(make_server, tmp_path, "killedworker", 4)
    time.sleep(0.5)
    [worker] = _workers(server)
    os.kill(worker, signal.SIGKILL)

    view = wait_finished(client, build_id)
    assert view["status"] == "succeeded", server.log()
    assert view["attempts"] == 2
    log = client.get(f"/v1/builds/{build_id}/log").text
    assert f"worker process {worker} died (exit code -9) during attempt 1; re-queued" in log
    assert "--- attempt 2 ---" in log
    replacement = _workers(server)
    assert len(replacement) == 1 and replacement != [worker]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_a_build_running_when_the_server_ended_is_retried(
    make_server: ServerFactory, tmp_path: Path, how: signal.Signals
) -> None:
    # The test outlasts the checks below: a worker still alive after the server is an orphan, not a
    # worker finishing its build.
    server, _client, build_id = _testing_slowly(make_server, tmp_path, f"serverended{how.value}", 15)
    workers = _workers(server)
    assert workers
    server.stop(how)  # SIGKILL: no cleanup at all; SIGTERM: a graceful stop re-queues the running build
    deadline = time.monotonic() + 5
    while alive := [pid for pid in workers if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"]:
        assert time.monotonic() < deadline, f"worker processes outlived the server: {alive}"
        time.sleep(0.2)

    restarted = ServerProcess(server.env, server.home, workers=1, admin_token=server.admin_token).start()
    try:
        view = wait_finished(restarted.client(restarted.admin_token), build_id)
        assert view["status"] == "succeeded", restarted.log()
        assert view["attempts"] == 2
    finally:
        restarted.stop()


def test_cancel_kills_a_running_build(make_server: ServerFactory, tmp_path: Path) -> None:
    _server, client, build_id = _testing_slowly(make_server, tmp_path, "cancelme", 300)
    deadline = time.monotonic() + 60
    while not _test_binaries("cancelme"):
        assert time.monotonic() < deadline, "the test binary never started"
        time.sleep(0.2)

    response = client.post(f"/v1/builds/{build_id}/cancel")
    assert response.status_code == 202
    view = wait_finished(client, build_id, timeout=30)
    assert view["status"] == "cancelled"
    deadline = time.monotonic() + 10
    while _test_binaries("cancelme"):
        assert time.monotonic() < deadline, "the cancelled build's test binary still runs"
        time.sleep(0.2)
    # The worker was replaced and takes new builds.
    after = upload(client, EXAMPLES / "hello", '{"targets": ["linux/amd64"], "tests": false}')
    assert wait_finished(client, after.json()["build_id"])["status"] == "succeeded"


def test_the_server_runs_on_postgresql(make_server: ServerFactory, postgres_url: str) -> None:
    server = make_server(workers=1, database_url=postgres_url)
    client = server.client(server.admin_token)
    response = upload(client, EXAMPLES / "hello", '{"targets": ["linux/amd64"]}')
    view = wait_finished(client, response.json()["build_id"])
    assert view["status"] == "succeeded", server.log()
    assert [b["id"] for b in client.get("/v1/builds").json()["builds"]] == [view["id"]]
    assert "postgresql" in server.log()


def test_a_build_past_its_own_timeout_fails_as_a_timeout(make_server: ServerFactory, tmp_path: Path) -> None:
    server = make_server(workers=1)
    client = server.client(server.admin_token)
    module = slow_module(tmp_path / "slow", "timesout", 300)
    response = upload(client, module, '{"targets": ["linux/amd64"], "timeout": 8}')
    view = wait_finished(client, response.json()["build_id"], timeout=120)
    assert view["status"] == "failed"
    assert view["failure"]["kind"] == "timeout", view
    assert not _test_binaries("timesout")


def serve_once(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`gocaas serve ARGS` that is expected to refuse to start: its exit status and output."""
    command = [sys.executable, "-m", "gocaas", "serve", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_second_server_on_the_same_data_directory_is_refused(make_server: ServerFactory) -> None:
    first = make_server(workers=1)
    second = serve_once(first.env, "--port", "0", "--workers", "1")
    assert second.returncode == 3
    assert f"another gocaas serve (pid {first.process.pid}" in second.stderr  # type: ignore[union-attr]
    assert "GOCAAS_HOME" in second.stderr
    # The API alone (no executor) may share it, e.g. a second front end.
    api_only = ServerProcess(first.env, first.home, workers=0, admin_token=first.admin_token).start()
    try:
        assert api_only.client(api_only.admin_token).get("/v1/builds").status_code == 200
    finally:
        api_only.stop()


def test_a_taken_port_is_refused_before_anything_starts_port_0_is_told(make_server: ServerFactory) -> None:
    first = make_server(workers=1)
    taken = serve_once(first.env, "--port", str(first.port), "--workers", "0")
    assert taken.returncode == 2, taken.stderr
    assert f"cannot listen on 127.0.0.1:{first.port}" in taken.stderr
    assert "Traceback" not in taken.stderr and "serving on" not in taken.stderr
    # An empty --host (say, an unset "$HOST") would bind every interface.
    empty = serve_once(first.env, "--host", "", "--workers", "0")
    assert empty.returncode == 2 and "--host is empty" in empty.stderr
    # --port 0: the line says the port it got, and the API answers there.
    any_port = subprocess.Popen(
        [sys.executable, "-m", "gocaas", "serve", "--port", "0", "--workers", "0"],
        env=first.env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert any_port.stderr is not None
        line = any_port.stderr.readline()
        url = line.split("serving on ")[1].split()[0]
        assert not url.endswith(":0"), line
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{url}/readyz", timeout=2).status_code == 200
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        os.killpg(any_port.pid, signal.SIGTERM)
        any_port.wait(timeout=30)
