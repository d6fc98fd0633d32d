"""Validating GOOS/GOARCH targets against what the toolchain supports (`go tool dist list -json`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from gocaas.errors import BadInput, InfraError
from gocaas.go.env import inspect_environ
from gocaas.spec import Target


@cache
def _dist_list(go: Path, _ino: int, _size: int, _mtime_ns: int) -> dict[Target, bool]:
    env = inspect_environ()
    try:
        proc = subprocess.run(  # noqa: S603
            [str(go), "tool", "dist", "list", "-json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        )
        entries = json.loads(proc.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as exc:
        raise InfraError(f"go tool dist list failed: {exc}", kind="toolchain") from exc
    return {Target(goos=e["GOOS"], goarch=e["GOARCH"]): bool(e.get("CgoSupported")) for e in entries}


def supported_targets(go: Path) -> dict[Target, bool]:
    """Every target the toolchain can build, mapped to whether cgo is supported there. Remembered per
    binary file (path, inode, size, mtime), like the toolchain's version: a go replaced in place is asked
    again."""
    try:
        info = go.stat()
    except OSError as exc:
        raise InfraError(f"{go} does not run: {exc}", kind="toolchain") from exc
    return _dist_list(go, info.st_ino, info.st_size, info.st_mtime_ns)


def validate_targets(go: Path, targets: Iterable[Target], *, cgo: bool) -> None:
    known = supported_targets(go)
    for target in targets:
        if target not in known:
            raise BadInput(
                f"target {target} is not supported by this Go toolchain (see `go tool dist list`)",
                kind="bad_target",
            )
        if cgo and not known[target]:
            raise BadInput(f"target {target} does not support cgo", kind="bad_target")
