"""Checksums in GoReleaser's format: one `<sha256 hex>  <file name>` line per artifact, sorted by name
(the same two-space layout as sha256sum(1), so `sha256sum -c sha256sums.txt` verifies it)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from gocaas.atomic import replacing

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(dest: Path, entries: Iterable[tuple[str, str]]) -> Path:
    """Write (name, sha256) pairs to dest, sorted by name."""
    lines = [f"{sha}  {name}\n" for name, sha in sorted(entries)]
    with replacing(dest) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")
    return dest


def read_checksums(path: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        sha, _, name = line.partition("  ")
        result[name] = sha
    return result
