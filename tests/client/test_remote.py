"""`gocaas submit | status | logs` and the client API against a real `gocaas serve`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gocaas.client import BuildOptions, GocaasClient, LogEnd, ServerBusy, pack_directory
from gocaas.errors import InfraError
from tests.conftest import EXAMPLES, CliFn
from tests.support.server import ServerProcess, free_port, module_archive, slow_module

BUILD_ID = re.compile(r"^[0-9a-z][0-9a-z_-]{5,}$", re.IGNORECASE)


@dataclass(frozen=True)
class Finished:
    build_id: str
    chunks: list[str]
    end: LogEnd | None


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return server.token("client-tests")


@pytest.fixture(scope="module")
def client(server: ServerProcess, token: str) -> Iterator[GocaasClient]:
    with GocaasClient(server.url, token) as client:
        yield client


@pytest.fixture(scope="module")
def hello_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copytree(EXAMPLES / "hello", tmp_path_factory.mktemp("hello") / "hello"))


@pytest.fixture(scope="module")
def hello_build(client: GocaasClient, hello_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """examples/hello packed and uploaded through the API, its log followed live to the end."""
    packed = pack_directory(hello_copy, tmp_path_factory.mktemp("pack") / "hello.tar.gz")
    submitted = client.submit_archive(packed.path, BuildOptions(targets=("linux/amd64",), version="api"))
    stream = client.follow_log(submitted.build_id)
    chunks = list(stream)
    return Finished(submitted.build_id, chunks, stream.end)


def remote(server: ServerProcess, token: str) -> tuple[str, ...]:
    return ("--server", server.url, "--token", token)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_submit_directory_follow_download(
    cli: CliFn, server: ServerProcess, token: str, client: GocaasClient, hello_copy: Path, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    done = cli(
        "submit",
        str(hello_copy),
        *remote(server, token),
        "--follow",
        "--download",
        str(dist),
        "--target",
        "linux/amd64",
        "--version",
        "cli-dir",
    )
    assert done.returncode == 0, done.stderr
    build_id = done.stdout.strip()
    assert BUILD_ID.match(build_id), done.stdout
    assert "packed 2 files" in done.stderr
    # The remote stages, shown by the local build's plain view, in the pipeline's order.
    shown = re.findall(r"^==> (\w+)$", done.stderr, re.MULTILINE)
    assert shown[:3] == ["source", "toolchain", "reuse"] and "build" in shown and shown[-1] == "package"
    assert re.search(r"^    build ok \(\d+\.\d\ds\)$", done.stderr, re.MULTILINE), done.stderr
    assert f"build {build_id} succeeded" in done.stderr

    listed = {a.name: a for a in client.artifacts(build_id)}
    assert "hello_linux_amd64" in listed
    for name, artifact in listed.items():
        assert sha256(dist / name) == artifact.sha256
    # No partial files left behind; sha256sums.txt as a local build writes it.
    assert sorted(p.name for p in dist.iterdir()) == sorted([*listed, "sha256sums.txt"])
    sums = dict(reversed(line.split("  ")) for line in (dist / "sha256sums.txt").read_text().splitlines())
    assert sums == {name: a.sha256 for name, a in listed.items()}
    binary = dist / "hello_linux_amd64"
    ran = subprocess.run([str(binary)], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "hello from gocaas (version cli-dir)"


def test_submit_git_url_with_ref_json_and_env_credentials(
    cli: CliFn, server: ServerProcess, token: str, tmp_path: Path
) -> None:
    repo = Path(shutil.copytree(EXAMPLES / "hello", tmp_path / "repo"))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.test"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "hello"], check=True)
    subprocess.run([*git, "tag", "v1.2.3"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "after the tag"], check=True)

    dist = tmp_path / "dist"
    done = cli(
        "submit",
        f"file://{repo}",
        "--ref",
        "v1.2.3",
        "--no-test",
        "--download",
        str(dist),
        "--json",
        env={"GOCAAS_SERVER": server.url, "GOCAAS_TOKEN": token},
    )

    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["status"] == "succeeded" and view["exit_code"] == 0
    assert view["source"]["kind"] == "git" and view["source"]["ref"] == "v1.2.3"
    skipped = {s["name"]: s for s in view["stages"] if s["status"] == "skipped"}
    assert "test" in skipped
    saved = {d["name"]: d for d in view["downloaded"]}
    for name, entry in saved.items():
        assert sha256(dist / name) == entry["sha256"]
    binary = Path(saved["hello_linux_amd64"]["path"])
    ran = subprocess.run([str(binary)], capture_output=True, text=True, check=True)
    # git describe of the tag itself (main, one commit later, would describe as 1.2.3-1-g...)
    assert ran.stdout.strip() == "hello from gocaas (version 1.2.3)"


def test_follow_log_streams_until_the_end(hello_build: Finished, client: GocaasClient) -> None:
    assert hello_build.end == LogEnd(status="succeeded", exit_code=0)
    text = "".join(hello_build.chunks)
    assert "[build]" in text and "linux/amd64" in text
    assert text.strip() == client.log(hello_build.build_id).strip()


def test_a_log_stream_resumes_after_the_last_event_id(hello_build: Finished, client: GocaasClient) -> None:
    first = client.follow_log(hello_build.build_id)
    chunks = iter(first)
    head = next(chunks)
    mark = first.last_id
    rest = "".join(chunks)
    assert mark is not None and rest, "the build's log should come in more than one chunk"

    resumed = client.follow_log(hello_build.build_id, last_event_id=mark)
    assert "".join(resumed) == rest
    assert resumed.end == first.end == LogEnd(status="succeeded", exit_code=0)
    assert head + rest == "".join(hello_build.chunks)


def test_status_and_logs_commands(
    cli: CliFn, server: ServerProcess, token: str, hello_build: Finished, client: GocaasClient
) -> None:
    build_id = hello_build.build_id
    done = cli("status", build_id, *remote(server, token))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"build {build_id}: succeeded, exit code 0"
    assert re.search(r"^  build +ok \d+\.\d\ds$", done.stdout, re.MULTILINE), done.stdout

    done = cli("status", build_id, *remote(server, token), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == build_id

    done = cli("logs", build_id, *remote(server, token))
    assert done.returncode == 0, done.stderr
    assert done.stdout == client.log(build_id)
    followed = cli("logs", build_id, *remote(server, token), "--follow")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.strip() == done.stdout.strip()


def test_submit_without_waiting_prints_the_id_and_an_identical_source_reuses_the_result(
    cli: CliFn, server: ServerProcess, token: str, hello_build: Finished, hello_copy: Path
) -> None:
    # Packing is deterministic, so the same directory and options are the same build inputs again.
    done = cli(
        "submit", str(hello_copy), *remote(server, token), "--target", "linux/amd64", "--version", "api"
    )
    assert done.returncode == 0, done.stderr
    build_id = done.stdout.strip()
    assert BUILD_ID.match(build_id) and build_id != hello_build.build_id

    followed = cli("logs", build_id, *remote(server, token), "--follow")
    assert followed.returncode == 0, followed.stderr
    status = cli("status", build_id, *remote(server, token))
    assert f"reused the result of build {hello_build.build_id}" in status.stdout, status.stdout


def test_a_tampered_download_is_detected_and_removed(
    client: GocaasClient, hello_build: Finished, tmp_path: Path
) -> None:
    artifact = next(a for a in client.artifacts(hello_build.build_id) if a.kind == "binary")
    forged = artifact.model_copy(update={"sha256": hashlib.sha256(b"something else").hexdigest()})

    with pytest.raises(InfraError) as caught:
        client.download(forged, tmp_path)
    assert caught.value.kind == "checksum_mismatch"
    assert artifact.sha256 in caught.value.message  # what was actually downloaded
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial one

    path = client.download(artifact, tmp_path)
    assert sha256(path) == artifact.sha256 and path.stat().st_mode & 0o111


def test_a_broken_module_exits_1_with_the_failure(
    cli: CliFn, server: ServerProcess, token: str, tmp_path: Path
) -> None:
    broken = Path(shutil.copytree(EXAMPLES / "hello", tmp_path / "broken"))
    (broken / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    done = cli("submit", str(broken), *remote(server, token), "--follow")
    assert done.returncode == 1, done.stderr
    assert re.search(r"build \S+ failed in the vet stage: user / vet_finding", done.stderr), done.stderr
    assert "main.go:3:15: undefined: undefined" in done.stderr
    assert "build skipped: the vet stage failed" in done.stderr


def test_a_bad_token_exits_2_with_the_servers_message(
    cli: CliFn, server: ServerProcess, hello_copy: Path
) -> None:
    done = cli("submit", str(hello_copy), "--server", server.url, "--token", "not-a-token")
    assert done.returncode == 2, done.stderr
    assert "unknown or revoked token" in done.stderr and done.stdout == ""

    done = cli("status", "whatever", "--server", server.url, "--token", "not-a-token", "--json")
    assert done.returncode == 2
    assert "unknown or revoked token" in json.loads(done.stdout)["failure"]["message"]


def test_an_unknown_build_exits_2(cli: CliFn, server: ServerProcess, token: str) -> None:
    done = cli("logs", "no-such-build", *remote(server, token))
    assert done.returncode == 2
    assert "no build 'no-such-build'" in done.stderr


def test_an_unreachable_server_exits_3(cli: CliFn, hello_copy: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = cli("status", "abc", "--server", url, "--token", "t")
    assert done.returncode == 3, done.stderr
    assert f"cannot reach the gocaas server at {url}" in done.stderr
    assert "Traceback" not in done.stderr

    done = cli("submit", str(hello_copy), "--server", "localhost:8080", "--token", "t")
    assert done.returncode == 2
    assert "http(s)://HOST[:PORT]" in done.stderr


def test_a_full_queue_is_retried_as_retry_after_asks_then_reported(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    busy = make_server(server_max_queued=1)
    token = busy.token("queue")
    client = GocaasClient(busy.url, token, attempts=3, max_wait=0.4)
    slow = client.submit_archive(
        module_archive(slow_module(tmp_path / "slow", "clientslow", 120)), BuildOptions(tests=True)
    )
    next(b for b in client.watch(slow.build_id, wait=5) if b.status != "queued")  # the one worker is busy
    queued = client.submit_archive(module_archive(EXAMPLES / "hello"), BuildOptions())
    try:
        started = time.monotonic()
        with pytest.raises(ServerBusy) as caught:
            client.submit_archive(module_archive(EXAMPLES / "hello"), BuildOptions(version="third"))
        waited = time.monotonic() - started
        # The server asks for 10 s; this client caps its waits at 0.4 s: two waits between three tries.
        assert caught.value.retry_after == 10.0
        assert 0.8 <= waited < 5, waited
        assert "the build queue is full" in caught.value.message and "503" in caught.value.message
        assert caught.value.exit_code == 3
    finally:
        for build_id in (slow.build_id, queued.build_id):
            client.http.post(f"/v1/builds/{build_id}/cancel")
        client.close()
