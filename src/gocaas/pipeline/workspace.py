"""Which directories a build works in: the project's stable workspace when it is free, else its own.

The stable workspace (`$GOCAAS_HOME/workspaces/<project>/`) keeps the source at the same absolute path from
build to build (go's test cache keys files by absolute path), and HOME, TMPDIR and GOPATH too (a test that
reads one of them is keyed by its value). A build holds the project's lock while it uses it; a second
concurrent build of the same project works in its own directory instead of waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gocaas.errors import GocaasError
from gocaas.go.env import BuildDirs
from gocaas.go.gomod import module_path
from gocaas.settings import Settings
from gocaas.spec import SourceKind, SourceSpec


def project_key(source: SourceSpec, namespace: str = "default") -> str:
    """Which workspace a build uses. A directory is known by its module path (read from its go.mod), so a
    fresh copy of the same module at another path still finds go's cached test results; a git URL or an
    archive by its location; each cache namespace (tenant) has its own. Sharing is always safe: the sync makes
    the workspace exactly the new source."""
    identity = f"{source.kind}\0{source.location}"
    if source.module is not None:
        identity = f"module\0{source.module}"
    elif source.kind is SourceKind.DIRECTORY:
        # no readable go.mod: intake will say so
        with contextlib.suppress(OSError, UnicodeDecodeError, GocaasError):
            identity = f"module\0{module_path(Path(source.location))}"
    if namespace != "default":
        identity = f"{namespace}\0{identity}"
    return hashlib.sha256(identity.encode()).hexdigest()[:20]


@contextmanager
def build_dirs(settings: Settings, source: SourceSpec, build_id: str) -> Iterator[BuildDirs]:
    root = settings.builds_dir / build_id
    workspaces = settings.home / "workspaces"
    workspaces.mkdir(parents=True, exist_ok=True)
    key = project_key(source, settings.cache_namespace)
    with (workspaces / f"{key}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield BuildDirs(root)  # another build of this project holds it: work privately
            return
        try:
            yield BuildDirs(root, workspaces / key)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def is_stable(dirs: BuildDirs) -> bool:
    return dirs.work is not None and dirs.work != dirs.root


__all__ = ["build_dirs", "is_stable", "project_key"]
