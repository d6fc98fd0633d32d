"""A real, offline GOPROXY for tests, built from the source trees under tests/fixtures/modules/.

    proxy = build_proxy(tmp_path / "proxy")                 # file:// proxy tree (byte-stable)
    consumer = make_consumer(tmp_path / "consumer", proxy,
                             {"example.test/greet": "v1.1.0", "example.test/color": "v0.3.0"},
                             gomodcache=tmp_path / "modcache")  # main module + go.sum made by the real go
    env = go_env(goproxy=file_proxy_url(proxy), gomodcache=..., gocache=..., home=...)

    with FlakyProxyServer(proxy, fail_first=2) as server:   # http://127.0.0.1:PORT, 503 twice, then serves
        ...
    dead_proxy_url()                                        # http://127.0.0.1:PORT where nothing listens

Fixture layout: tests/fixtures/modules/<name>/<version>/ holds one version's files, including its go.mod
(whose `module` line names the module path).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.parse
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "CONSUMER_MODULE",
    "FIXED_TIME",
    "FIXTURE_MODULES",
    "FlakyProxyServer",
    "GoCommandError",
    "ModuleVersion",
    "build_proxy",
    "dead_proxy_url",
    "escape_path",
    "file_proxy_url",
    "fixture_modules",
    "go_env",
    "make_consumer",
    "run_go",
]

FIXTURE_MODULES = Path(__file__).resolve().parent.parent / "fixtures" / "modules"
FIXED_TIME = "2024-01-01T00:00:00Z"
CONSUMER_MODULE = "example.test/consumer"

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_SEMVER_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_MODULE_RE = re.compile(r"^\s*module\s+\"?([^\s\"]+)\"?\s*$", re.MULTILINE)


class GoCommandError(RuntimeError):
    """A go command the helpers ran exited non-zero."""

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"{' '.join(args)} exited {returncode}:\n{stderr.strip() or stdout.strip()}")
        self.cmd = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


@dataclass(frozen=True)
class ModuleVersion:
    """One version of one fixture module: its path, version and the directory holding its files."""

    path: str
    version: str
    source: Path

    def files(self) -> list[tuple[str, Path]]:
        """(slash-separated relative name, file) for every file, sorted by name."""
        found = [
            (p.relative_to(self.source).as_posix(), p)
            for p in self.source.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
        return sorted(found)


def escape_path(path: str) -> str:
    """The go command's case-escaping for module paths and versions: 'A' becomes '!a'."""
    return "".join(f"!{ch.lower()}" if "A" <= ch <= "Z" else ch for ch in path)


def _semver_key(version: str) -> tuple[int, int, int, int, str]:
    match = _SEMVER_RE.match(version)
    if not match:
        raise ValueError(f"not a semantic version: {version!r}")
    major, minor, patch, pre = match.groups()
    # A release sorts after its pre-releases.
    return int(major), int(minor), int(patch), 0 if pre else 1, pre or ""


def fixture_modules(root: Path = FIXTURE_MODULES) -> list[ModuleVersion]:
    """Every <name>/<version>/ tree under root that has a go.mod, sorted by module path then version."""
    found: list[ModuleVersion] = []
    for gomod in sorted(root.glob("*/*/go.mod")):
        version_dir = gomod.parent
        if not _SEMVER_RE.match(version_dir.name):
            raise ValueError(f"{version_dir}: directory name is not a version")
        match = _MODULE_RE.search(gomod.read_text(encoding="utf-8"))
        if not match:
            raise ValueError(f"{gomod}: no module line")
        found.append(ModuleVersion(path=match.group(1), version=version_dir.name, source=version_dir))
    return sorted(found, key=lambda m: (m.path, _semver_key(m.version)))


def _write_zip(target: Path, module: ModuleVersion) -> None:
    prefix = f"{module.path}@{module.version}/"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in module.files():
            info = zipfile.ZipInfo(prefix + name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), compresslevel=6)


def build_proxy(dest: Path, modules_root: Path = FIXTURE_MODULES) -> Path:
    """Write a GOPROXY tree for every fixture module version under modules_root into dest; return dest.

    Layout (what the go command reads from a file:// or HTTP proxy): <escaped path>/@v/list,
    <escaped version>.info, .mod and .zip. The output is byte-stable: fixed times, sorted entries.
    Use with GOPROXY=file_proxy_url(dest), GOSUMDB=off (or GONOSUMDB=example.test) and GOFLAGS=-mod=mod.
    """
    modules = fixture_modules(modules_root)
    if not modules:
        raise ValueError(f"no fixture modules under {modules_root}")
    versions: dict[str, list[str]] = {}
    for module in modules:
        vdir = dest / escape_path(module.path) / "@v"
        vdir.mkdir(parents=True, exist_ok=True)
        base = vdir / escape_path(module.version)
        info = json.dumps({"Version": module.version, "Time": FIXED_TIME})
        base.with_name(base.name + ".info").write_text(info + "\n", encoding="utf-8")
        base.with_name(base.name + ".mod").write_bytes((module.source / "go.mod").read_bytes())
        _write_zip(base.with_name(base.name + ".zip"), module)
        versions.setdefault(module.path, []).append(module.version)
    for path, listed in versions.items():
        listing = "".join(f"{v}\n" for v in listed)
        (dest / escape_path(path) / "@v" / "list").write_text(listing, encoding="utf-8")
    return dest


def file_proxy_url(proxy: Path) -> str:
    """The GOPROXY value for a proxy tree on disk: file:///abs/path."""
    return proxy.resolve().as_uri()


def _resolve_go(go_bin: str) -> str:
    found = shutil.which(go_bin)
    if found is None:
        raise FileNotFoundError(f"go command not found: {go_bin!r}")
    return found


def go_env(
    *,
    goproxy: str,
    gomodcache: Path,
    gocache: Path,
    home: Path,
    go_bin: str = "go",
    gosumdb: str = "off",
    goflags: str = "-mod=mod -modcacherw",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An explicit environment for the go command; nothing else is inherited from the caller but PATH.

    -modcacherw keeps the module cache deletable by tmp_path cleanup. GOENV=off and a private HOME keep
    the user's `go env -w` settings out; GOTOOLCHAIN=local forbids toolchain downloads.
    """
    go_dir = str(Path(_resolve_go(go_bin)).parent)
    path = os.pathsep.join([go_dir, os.environ.get("PATH", os.defpath)])
    env = {
        "PATH": path,
        "HOME": str(home),
        "GOPROXY": goproxy,
        "GOSUMDB": gosumdb,
        "GOFLAGS": goflags,
        "GOTOOLCHAIN": "local",
        "GOMODCACHE": str(gomodcache),
        "GOCACHE": str(gocache),
        "GOENV": "off",
        "GOWORK": "off",
    }
    if extra:
        env.update(extra)
    return env


def run_go(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    go_bin: str = "go",
    timeout: float = 300.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `go <args>` (argument list, no shell) with exactly env.

    Raises GoCommandError when check is true and go exits non-zero.
    """
    cmd = [_resolve_go(go_bin), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise GoCommandError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc


_CONSUMER_MAIN = """\
package main

import (
\t"fmt"

\t"example.test/color"
\t"example.test/greet"
)

func main() {
\tfmt.Println(greet.Hello(color.Paint("x")))
}
"""


def make_consumer(
    dest: Path,
    proxy: Path,
    requires: Mapping[str, str],
    *,
    go_bin: str = "go",
    gomodcache: Path,
    gocache: Path | None = None,
) -> Path:
    """Write the main module example.test/consumer into dest and make its go.sum with `go mod tidy`.

    requires maps module path → version for go.mod's require block (missing ones are resolved by tidy
    from the proxy). The real go runs with GOPROXY=file://proxy, GOSUMDB=off, GOFLAGS=-mod=mod,
    GOTOOLCHAIN=local, the given GOMODCACHE, and a throwaway HOME (and GOCACHE unless given). Returns dest.
    """
    dest.mkdir(parents=True, exist_ok=True)
    lines = [f"module {CONSUMER_MODULE}", "", "go 1.21", ""]
    if requires:
        required = [f"\t{path} {version}" for path, version in sorted(requires.items())]
        lines += ["require (", *required, ")", ""]
    (dest / "go.mod").write_text("\n".join(lines), encoding="utf-8")
    (dest / "main.go").write_text(_CONSUMER_MAIN, encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="gocaas-consumer-") as scratch:
        home = Path(scratch) / "home"
        home.mkdir()
        env = go_env(
            goproxy=file_proxy_url(proxy),
            gomodcache=gomodcache,
            gocache=gocache if gocache is not None else Path(scratch) / "gocache",
            home=home,
            go_bin=go_bin,
        )
        run_go(["mod", "tidy"], cwd=dest, env=env, go_bin=go_bin)
    return dest


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _ProxyHTTPServer
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, *, send_body: bool) -> None:
        owner = self.server.owner
        status = owner._count(self.path)
        if status is not None:
            self._send(status, b"injected failure\n", "text/plain; charset=utf-8", send_body)
            return
        target = owner._resolve(self.path)
        if target is None:
            self._send(404, b"not found\n", "text/plain; charset=utf-8", send_body)
            return
        kind = "application/zip" if target.suffix == ".zip" else "text/plain; charset=utf-8"
        self._send(200, target.read_bytes(), kind, send_body)

    def _send(self, status: int, body: bytes, content_type: str, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)


class _ProxyHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: FlakyProxyServer) -> None:
        self.owner = owner
        super().__init__(address, _ProxyHandler)


class FlakyProxyServer:
    """Serve a proxy tree (from build_proxy) over loopback HTTP; fail the first fail_first requests.

    Every request is counted in `requests`; the first `fail_first` get `status` (default 503) and those
    that are 5xx are counted in `failures`. Missing files get 404, as the proxy protocol expects.
    `paths` lists the request paths in arrival order. Use as a context manager, or start()/stop().
    """

    def __init__(
        self, root: Path, *, fail_first: int = 0, status: int = 503, host: str = "127.0.0.1"
    ) -> None:
        self.root = root.resolve()
        self.status = status
        self._host = host
        self._lock = threading.Lock()
        self._remaining = fail_first
        self._requests = 0
        self._failures = 0
        self._paths: list[str] = []
        self._server: _ProxyHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def failures(self) -> int:
        with self._lock:
            return self._failures

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return list(self._paths)

    def fail_next(self, count: int, status: int | None = None) -> None:
        """Answer the next count requests with status (default: the status given at construction)."""
        with self._lock:
            self._remaining = count
            if status is not None:
                self.status = status

    def start(self) -> FlakyProxyServer:
        if self._server is not None:
            return self
        self._server = _ProxyHTTPServer((self._host, 0), self)
        port = self._server.server_address[1]
        self.url = f"http://{self._host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="flaky-goproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> FlakyProxyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Called from handler threads.
    def _count(self, path: str) -> int | None:
        """Record one request; return the status to fail it with, or None to serve it."""
        with self._lock:
            self._requests += 1
            self._paths.append(path)
            if self._remaining > 0:
                self._remaining -= 1
                if self.status >= 500:
                    self._failures += 1
                return self.status
            return None

    def _resolve(self, raw_path: str) -> Path | None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(raw_path).path)
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") or "\\" in p for p in parts):
            return None
        target = self.root.joinpath(*parts)
        with contextlib.suppress(OSError):
            if target.is_file() and target.resolve().is_relative_to(self.root):
                return target
        return None


def dead_proxy_url() -> str:
    """An http://127.0.0.1:PORT URL where nothing listens (the port was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
