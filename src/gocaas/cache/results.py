"""The result cache: an earlier successful build's report and files, under a key computed by the pipeline.

The cache knows nothing about stages or what the key means: it stores a JSON document and a set of files
under a key, atomically (a complete entry appears by one rename, or not at all), and hands them back.

Each entry holds a whole build's files (binaries, archives), so the cache has a budget like the build
cache's: `trim` removes the least recently used entries (a lookup refreshes one) of every namespace until
they fit it and their disk has min_free free, never one used within MIN_AGE_S (it may be being copied out).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gocaas.cache.diskspace import MinFree, gc_goal

RESULTS_DIR = "results"
MIN_AGE_S = 600.0


@dataclass(frozen=True)
class CachedResult:
    key: str
    document: dict[str, Any]
    files: Path  # a directory holding the entry's files by name


class ResultCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _entry(self, key: str) -> Path:
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"not a result key: {key!r}")
        return self.root / key[:2] / key

    def lookup(self, key: str) -> CachedResult | None:
        entry = self._entry(key)
        try:
            document = json.loads((entry / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        files = entry / "files"
        if not all((files / name).is_file() for name in document.get("_files", [])):
            return None  # damaged entry: a miss, rebuilt and replaced
        os.utime(entry / "result.json")  # recently used, for whoever trims the cache
        return CachedResult(key, document, files)

    def store(self, key: str, document: dict[str, Any], files: list[Path]) -> None:
        entry = self._entry(key)
        if entry.exists():
            return
        staging = entry.with_name(f".{key}.{os.getpid()}.{time.monotonic_ns()}")
        (staging / "files").mkdir(parents=True)
        try:
            names = []
            for path in files:
                shutil.copyfile(path, staging / "files" / path.name)
                shutil.copymode(path, staging / "files" / path.name)
                names.append(path.name)
            (staging / "result.json").write_text(json.dumps({**document, "_files": names}), encoding="utf-8")
            try:
                staging.rename(entry)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)  # another build stored the same key first
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


@dataclass(frozen=True)
class Trimmed:
    entries: int  # removed
    removed_bytes: int
    total_after: int  # bytes the entries left hold


def trim(
    root: Path, max_size: int | None, min_free: MinFree | None = None, *, min_age_s: float = MIN_AGE_S
) -> Trimmed:
    """Remove least recently used entries of every namespace under root (the results directory's parent)
    until they hold at most max_size bytes (None: no budget) and root's disk has min_free free; and what a
    killed writer or trimmer left behind (hidden directories), once as old as min_age_s."""
    from gocaas.cache.maintenance import remove_tree

    young = time.time() - min_age_s
    found: list[tuple[float, int, Path]] = []
    for prefix in (p for ns in _dirs(root) for p in _dirs(ns)):
        for entry in _dirs(prefix):
            try:
                if entry.name.startswith("."):  # a writer's staging or a trimmer's trash, left behind
                    if entry.stat().st_mtime < young:
                        remove_tree(str(entry), str(entry.with_name(f".trim-{entry.name}-{os.getpid()}")))
                    continue
                result = entry / "result.json"
                used = result.stat().st_mtime if result.exists() else 0.0  # damaged: the first to go
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
            except FileNotFoundError:  # another trim took it meanwhile
                continue
            found.append((used, size, entry))
    total = sum(size for _, size, _ in found)
    goal, _ = gc_goal(str(root), total, max_size, min_free)
    removed = removed_bytes = 0
    for used, size, entry in sorted(found) if goal is not None else ():
        if total <= goal or used >= young:
            break
        remove_tree(str(entry), str(entry.with_name(f".trim-{entry.name}-{os.getpid()}")))
        total -= size
        removed, removed_bytes = removed + 1, removed_bytes + size
    return Trimmed(removed, removed_bytes, total)


def _dirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
