"""The fast way a local directory reaches its stable workspace: files whose size, mtime, inode and ctime
are what they were at the last build are neither read nor copied (git's index uses the same stat test).

Only plain trees take this path: a symlink, a special file or a missing go.mod sends the build through the
full intake (gocaas.source.directory), which checks and explains them.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import BinaryIO

from gocaas.atomic import replacing
from gocaas.errors import BadInput
from gocaas.settings import Settings
from gocaas.source.directory import unreadable
from gocaas.source.git import describe_worktree
from gocaas.source.stable import Synced, content_mtime, finish, load_record, remove_extra, state
from gocaas.source.workspace import VCS_DIRS, Workspace

SOURCE_RECORD = "source-record.json"
_CHUNK = 1 << 20


def _walk_error(exc: OSError) -> None:
    # A directory that can't be listed must not quietly drop out of the build and its digest; one that
    # vanished while we walked is simply absent.
    if not isinstance(exc, FileNotFoundError):
        raise exc


def _scan(source: Path) -> dict[str, os.stat_result] | None:
    found: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(source, onerror=_walk_error):
        dirnames[:] = [d for d in dirnames if d not in VCS_DIRS]
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            info = (base / name).lstat()
            if stat.S_ISLNK(info.st_mode) or not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                return None  # the full intake judges links and special files
            if stat.S_ISREG(info.st_mode) and name not in VCS_DIRS:
                found[(base / name).relative_to(source).as_posix()] = info
    return found


def _copy_hashing(reader: BinaryIO, dest: Path, mode: int) -> str:
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with replacing(dest) as tmp:
        with tmp.open("wb") as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
        tmp.chmod(mode & 0o777)
    return digest.hexdigest()


def _refusal(exc: PermissionError, source: Path, label: str) -> BadInput:
    # Only the user's tree is read here, so the error is always about a part of it.
    return unreadable(exc, source, label) or BadInput(
        f"cannot read {label}: permission denied", kind="no_source"
    )


def fast_sync(
    source: Path, target: Path, record: Path, settings: Settings
) -> tuple[Workspace, Synced] | None:
    """Sync `source` into `target` reading only changed files; None when the fast path does not apply."""
    label = str(source)
    source = Path(os.path.realpath(source))
    try:
        if not (source / "go.mod").is_file():
            return None
        files = _scan(source)
    except PermissionError as exc:
        raise _refusal(exc, source, label) from exc
    if files is None:
        return None
    first = not record.exists()
    synced_before = load_record(record)
    seen_path = record.with_name(SOURCE_RECORD)
    seen_before = load_record(seen_path)
    target.mkdir(parents=True, exist_ok=True)
    changed = remove_extra(target, files.keys())
    removed = len(changed)
    manifest: dict[str, str] = {}
    after: dict[str, list[object]] = {}
    seen: dict[str, list[object]] = {}
    kept = written = 0
    for rel in sorted(files):
        info = files[rel]
        key: list[object] = [info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns]
        earlier = seen_before.get(rel)
        dest = target / rel
        entry_hash = str(earlier[4]) if earlier is not None and earlier[:4] == key else None
        written_before = synced_before.get(rel)
        if entry_hash is not None and written_before == [entry_hash, *(state(dest) or [])]:
            kept += 1
            after[rel] = written_before
        else:
            executable = "x" if info.st_mode & stat.S_IXUSR else "-"
            try:
                reader = (source / rel).open("rb")
            except PermissionError as exc:
                raise _refusal(exc, source, label) from exc
            with reader:
                entry_hash = f"f:{executable}:{_copy_hashing(reader, dest, info.st_mode)}"
            mtime = content_mtime(entry_hash)
            os.utime(dest, (mtime, mtime))
            written += 1
            changed.append(rel)
            after[rel] = [entry_hash, *(state(dest) or [])]
        manifest[rel] = entry_hash
        seen[rel] = [*key, entry_hash]
    finish(target, after, record)
    seen_path.write_text(json.dumps(seen), encoding="utf-8")
    total = hashlib.sha256()  # the digest format of gocaas.source.digest, from the entries' own hashes
    for rel, entry_hash in manifest.items():
        _, executable, hexdigest = entry_hash.split(":")
        total.update(
            b"f\0" + os.fsencode(rel) + b"\0" + executable.encode() + b"\0" + bytes.fromhex(hexdigest)
        )
    info = describe_worktree(source, settings)
    workspace = Workspace(
        target, "sha256:" + total.hexdigest(), len(manifest), info.describe, info.commit, None, manifest
    )
    return workspace, Synced(kept, written, removed, None if first else tuple(sorted(changed)))
