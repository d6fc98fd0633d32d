"""A real `gocaas serve` on loopback, in a subprocess, for the server and client tests."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gocaas.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_home(base: Path, shared: Settings) -> Path:
    """A data directory of its own (database, builds, results) sharing the session's warm caches."""
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    for name in ("gocache", "toolchains", "cache", "gomodcache", "helpers"):
        (shared.home / name).mkdir(parents=True, exist_ok=True)
        if not (home / name).exists():
            (home / name).symlink_to(shared.home / name)
    return home


@dataclass
class ServerProcess:
    """`python -m gocaas serve` with the given environment; `start()` waits until /readyz answers."""

    env: dict[str, str]
    home: Path
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    admin_token: str | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.log_path = self.home / f"server-{self.port}-{int(time.time() * 1000)}.log"
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gocaas",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gocaas serve exited {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"gocaas serve did not become ready in {timeout}s:\n{self.log()}")
        assert self.process.stdout is not None
        if self.admin_token is None:
            # First start prints the admin token on stdout; a restart prints nothing.
            os.set_blocking(self.process.stdout.fileno(), False)
            printed = (self.process.stdout.read() or "").strip().splitlines()
            self.admin_token = printed[-1] if printed else None
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)  # the server and its workers
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def token(self, tenant: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gocaas", "token", "create", "--tenant", tenant],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout.strip().splitlines()[-1]

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def module_archive(source: Path) -> bytes:
    """A .tar.gz of a module directory, as a client would upload it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(source)))
    return buffer.getvalue()


def wait_finished(client: httpx.Client, build_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/v1/builds/{build_id}", params={"wait": 20})
        response.raise_for_status()
        view: dict[str, Any] = response.json()
        if view["status"] in ("succeeded", "failed", "cancelled"):
            return view
    raise AssertionError(f"build {build_id} did not finish in {timeout}s")


def slow_module(dest: Path, name: str, seconds: float) -> Path:
    """A main package whose one test sleeps `seconds`: a build that is reliably mid-test for a while.
    A distinct `name` gives a distinct test binary, so go's test cache never answers it."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "go.mod").write_text(f"module example.test/{name}\n\ngo 1.21\n")
    (dest / "main.go").write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("slow") }\n')
    (dest / "main_test.go").write_text(
        'package main\n\nimport (\n\t"testing"\n\t"time"\n)\n\n'
        f"func TestSlow(t *testing.T) {{ time.Sleep({int(seconds * 1000)} * time.Millisecond) }}\n"
    )
    return dest


def upload(client: httpx.Client, source: Path, spec: str = "{}", **headers: str) -> httpx.Response:
    return client.post(
        "/v1/builds",
        files={"archive": ("module.tar.gz", module_archive(source))},
        data={"spec": spec},
        headers=headers,
    )


def wait_until(client: httpx.Client, build_id: str, predicate: Any, timeout: float = 300) -> dict[str, Any]:
    """Long-poll the build until predicate(view) holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view: dict[str, Any] = client.get(f"/v1/builds/{build_id}", params={"wait": 5}).json()
        if predicate(view):
            return view
    raise AssertionError(f"build {build_id}: condition not reached in {timeout}s")
