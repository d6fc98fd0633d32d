"""Fixtures for the cache tests: GOCACHEPROG sessions driven from Python, and a go environment whose build
cache is a cacheprog store, with one warm store for the whole session (a go build through an empty store
compiles the parts of std the module needs: ~15 s here)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gocaas.cache.command import cacheprog_command
from gocaas.cache.store import Store

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
HELLO = ROOT / "examples" / "hello"
PASSING = ROOT / "tests" / "fixtures" / "gotest" / "passing"


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def prog_argv(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gocaas.cache.prog", "--dir", str(store), *args]


def python_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOCAAS_", "PYTHON"))}
    return env | {"PYTHONPATH": str(SRC)} | extra


class Session:
    """A GOCACHEPROG program spoken to as the go command does (requests + blank line, base64 bodies)."""

    def __init__(self, store: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            prog_argv(store, *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or python_env(),
        )
        self.next_id = 0
        self.hello = self.read()

    def send(self, command: str, body: bytes | None = None, **fields: Any) -> int:
        assert self.proc.stdin is not None
        self.next_id += 1
        req: dict[str, Any] = {"ID": self.next_id, "Command": command}
        for name, value in fields.items():
            req[name] = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        if body is not None:
            req["BodySize"] = len(body)
        self.proc.stdin.write(json.dumps(req).encode() + b"\n\n")
        if body:
            self.proc.stdin.write(b'"' + base64.b64encode(body) + b'"\n')
        self.proc.stdin.flush()
        return self.next_id

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"program ended early: {self.stderr()}"
        return json.loads(line)

    def call(self, command: str, body: bytes | None = None, **fields: Any) -> dict[str, Any]:
        rid = self.send(command, body, **fields)
        res = self.read()
        assert res["ID"] == rid
        return res

    def put(self, action_id: bytes, body: bytes) -> dict[str, Any]:
        return self.call("put", body, ActionID=action_id, OutputID=sha(body))

    def get(self, action_id: bytes) -> dict[str, Any]:
        return self.call("get", ActionID=action_id)

    def close(self) -> int:
        res = self.call("close")
        assert set(res) == {"ID"}
        assert self.proc.stdout is not None and self.proc.stdout.read() == b""
        return self.proc.wait(timeout=30)

    def stderr(self) -> str:
        self.proc.kill()
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")


def age(store: Store, namespace: str, action_id: bytes, seconds_ago: float) -> None:
    """Make an entry (and its object) last used seconds_ago, as the LRU gc sees it."""
    entry = store.get(namespace, action_id)
    assert entry is not None
    when = time.time() - seconds_ago
    for path in (store.path(entry.output_id), store.action_path(namespace, action_id)):
        os.utime(path, (when, when))


def go_env(tmp: Path, gocacheprog: str, **extra: str) -> dict[str, str]:
    """An explicit environment for the go command, like gocaas's: offline, -trimpath, cgo off."""
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "GOCACHE": str(tmp / "gocache-unused"),
        "GOMODCACHE": str(tmp / "gomodcache"),
        "GOPROXY": "off",
        "GOFLAGS": "-trimpath",
        "GOTOOLCHAIN": "local",
        "GOENV": "off",
        "GOWORK": "off",
        "GOTELEMETRY": "off",
        "CGO_ENABLED": "0",
        "GOCACHEPROG": gocacheprog,
        "PYTHONPATH": str(SRC),
        **extra,
    }


def go(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["go", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"go {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def read_stats(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def runtime() -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR, short enough for sockets; removing it ends the residents in it."""
    path = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def warm_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding what building examples/hello and testing the `passing` fixture need (std included)."""
    if shutil.which("go") is None:
        pytest.skip("no go command on PATH")
    tmp = tmp_path_factory.mktemp("warm-store")
    store = tmp / "store"
    env = go_env(tmp, cacheprog_command(store))
    go(["build", "-o", str(tmp / "hello"), "."], HELLO, env)
    go(["test", "./..."], PASSING, env)
    return store


# -- the remote tier: `gocaas cache serve` in this process or in a subprocess

TOKEN = "test-token"
READ_TOKEN = "test-read-token"


class LiveServer:
    """make_server(...) serving from a thread; stopped by the fixture."""

    def __init__(self, store: Path, **options: Any) -> None:
        import threading

        from gocaas.cache.server import make_server

        self.store = store
        self.server = make_server(store, token=TOKEN, **options)
        self.url = self.server.url
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(tmp_path: Path) -> Any:
    servers: list[LiveServer] = []

    def start(store: Path | None = None, **options: Any) -> LiveServer:
        servers.append(LiveServer(store or tmp_path / "server-store", **options))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


class ServerProcess:
    """`python -m gocaas.cache.server` on a free port, in its own process (so that it can be killed -9)."""

    def __init__(self, store: Path, *args: str) -> None:
        argv = [sys.executable, "-m", "gocaas.cache.server", "--listen", "127.0.0.1:0", "--dir", str(store)]
        self.proc = subprocess.Popen(
            [*argv, *args], stderr=subprocess.PIPE, text=True, env=python_env(GOCAAS_CACHE_TOKEN=TOKEN)
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert "listening on " in line, line + self.proc.stderr.read()
        self.url = line.split("listening on ")[1].split(",")[0]

    def status(self) -> dict[str, int]:
        import urllib.request

        req = urllib.request.Request(f"{self.url}/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def remote_args(url: str, *extra: str) -> list[str]:
    return ["--remote", url, "--token", TOKEN, *extra]
