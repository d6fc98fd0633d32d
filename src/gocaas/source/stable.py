"""A stable workspace per project, with file times derived from content, so go's test cache works across
builds (issue #4): go keys the files a test reads by their absolute path, size, mode and modification time —
not their content — so a fresh checkout at a new path, or with new mtimes, re-runs every such test.

Each build takes its source into a fresh `incoming` directory as always (safe extraction, copy, clone), then
syncs it into the project's `src`: unchanged files are left exactly as they were, changed and new files are
moved in, anything else (say, a file an earlier build's test wrote) is removed. Every file's mtime is a time
derived from its content hash (old, deterministic, different when the content differs), every directory's a
fixed old time, so two builds of the same content present the same files at the same path to the go command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gocaas.atomic import replacing

# 2000-01-01 + up to ten years: far older than go's 2-second "too new to cache" cut-off.
_BASE = 946684800
_SPAN = 10 * 365 * 86400
DIR_MTIME = _BASE
MANIFEST = "manifest.json"


def content_mtime(entry_hash: str) -> int:
    return _BASE + int(hashlib.sha256(entry_hash.encode()).hexdigest()[:12], 16) % _SPAN


def _load(path: Path) -> dict[str, list[object]]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        return loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        return {}


def _state(path: Path) -> list[object] | None:
    try:
        info = path.lstat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, stat.S_IFMT(info.st_mode)]


@dataclass(frozen=True)
class Synced:
    kept: int
    written: int
    removed: int
    changed: tuple[str, ...] | None  # paths written or removed; None when there was no earlier build here


def load_record(record: Path) -> dict[str, list[object]]:
    return _load(record)


def state(path: Path) -> list[object] | None:
    return _state(path)


def remove_extra(target: Path, keep: Iterable[str]) -> list[str]:
    """Remove what is not to be kept (deepest first), including whatever a build left behind."""
    wanted = set(keep)
    removed: list[str] = []
    for dirpath, dirnames, filenames in os.walk(target, topdown=False):
        base = Path(dirpath)
        for name in [*filenames, *(d for d in dirnames if (base / d).is_symlink())]:
            rel = (base / name).relative_to(target).as_posix()
            if rel not in wanted:
                (base / name).unlink()
                removed.append(rel)
        for name in dirnames:
            full = base / name
            if not full.is_symlink() and full.is_dir() and not any(full.iterdir()):
                rel = full.relative_to(target).as_posix()
                if not any(path.startswith(rel + "/") for path in wanted):
                    full.rmdir()
    return removed


def finish(target: Path, after: dict[str, list[object]], record: Path) -> None:
    """Fixed directory times, and the record of what the workspace now holds."""
    for dirpath, _, _ in os.walk(target):
        os.utime(dirpath, (DIR_MTIME, DIR_MTIME))
    with replacing(record) as tmp:
        tmp.write_text(json.dumps(after), encoding="utf-8")


def sync_tree(incoming: Path, target: Path, manifest: dict[str, str], record: Path) -> Synced:
    """Make `target` hold exactly `incoming`'s entries (described by `manifest`), moving what changed.

    `record` remembers what was written and how it looked on disk afterwards; a file whose entry hash or
    on-disk state differs from the record is replaced.
    """
    first = not record.exists()
    before = _load(record)
    changed: list[str] = []
    target.mkdir(parents=True, exist_ok=True)
    kept = written = removed = 0
    removed_paths = remove_extra(target, manifest.keys())
    removed = len(removed_paths)
    changed += removed_paths
    after: dict[str, list[object]] = {}
    for rel, entry_hash in manifest.items():
        dest = target / rel
        remembered = before.get(rel)
        if remembered is not None and remembered[0] == entry_hash and _state(dest) == remembered[1:]:
            kept += 1
            after[rel] = remembered
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        (incoming / rel).replace(dest)
        if not entry_hash.startswith("l:"):
            mtime = content_mtime(entry_hash)
            os.utime(dest, (mtime, mtime))
        written += 1
        changed.append(rel)
        state = _state(dest)
        after[rel] = [entry_hash, *(state or [])]
    finish(target, after, record)
    return Synced(kept, written, removed, None if first else tuple(sorted(changed)))
