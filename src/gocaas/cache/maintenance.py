"""Keeping a Store within its size budget, and honest.

- `usage(store)`: the bytes the store holds (sum of file sizes, as the go command counts its own cache: the
  filesystem's block rounding is not counted).
- `gc(store, max_size, min_free=...)`: evicts least-recently-used files (oldest mtime; a hit refreshes it,
  see store.py) until the store holds at most max_size bytes and its filesystem has min_free free
  (diskspace.py), then drops action entries whose object is gone and temp
  files left by killed writers. Files younger than `min_age_s` are never removed, so the budget is soft: the
  store can exceed it by what was used within min_age_s. An object is removed by renaming it into tmp/,
  checking that nobody refreshed it meanwhile (else it goes back) and unlinking it, so a get that refreshed it
  in the meantime keeps it. One gc at a time per store (a lock file); others skip or wait.
- `auto_gc(store)`: the gc a writer runs when the store went over its budget or its disk under min_free.
- `verify(store)`: rehashes every object and checks every entry, removing the corrupt ones.
- `clear_namespace(store, ns)`: drops a namespace's action entries (and a server's traces of it), e.g. after
  a remote was found serving entries that name the wrong outputs, which no hash check can see.

The shared usage estimate (`usage` file) lets every process decide cheaply whether a gc is due: each adds the
bytes it wrote under a lock (see Store.flush_usage); gc rewrites it with the measured total.
"""

# The store's paths are str (see store.py), walked with os.scandir.
# ruff: noqa: PTH103, PTH104, PTH105, PTH108, PTH110, PTH116, PTH118, PTH119, PTH123, PTH202

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field

from gocaas.cache.diskspace import MinFree, gc_goal, mark_short
from gocaas.cache.files import lock_file, unique_name, unlink, unlock_file
from gocaas.cache.store import CacheError, Store, _parse_entry, check_namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gocaas.cache.signing import EntryVerifier

LOW_WATER = 0.9  # an automatic gc brings the store down to this fraction of its budget


@dataclass
class GCResult:
    ran: bool = True  # False when another process held the gc lock and we did not wait
    total_before: int = 0
    total_after: int = 0
    removed_objects: int = 0
    removed_actions: int = 0
    removed_tmp: int = 0
    removed_bytes: int = 0
    kept_young_bytes: int = 0  # bytes over budget that were too recently used to evict
    disk_short: int = 0  # bytes the disk was short of min_free when it started


@dataclass
class VerifyResult:
    objects: int = 0
    corrupt_objects: int = 0
    actions: int = 0
    bad_actions: int = 0
    bytes: int = 0
    removed: list[str] = field(default_factory=list)
    # with a verifier (signing.py): entries whose signature none of its keys made (removed), and unsigned
    # entries (removed only when asked)
    bad_signatures: int = 0
    unsigned: int = 0


def _files(directory: str, depth: int) -> list[tuple[float, int, str]]:
    """(mtime, size, path) of the regular files `depth` directory levels below directory."""
    found: list[tuple[float, int, str]] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                try:
                    if depth > 0 and entry.is_dir(follow_symlinks=False):
                        found.extend(_files(entry.path, depth - 1))
                    elif depth == 0 and entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        found.append((st.st_mtime, st.st_size, entry.path))
                except FileNotFoundError:
                    continue
    except FileNotFoundError:
        pass
    return found


def usage(store: Store) -> int:
    """Bytes held in objects and action entries, measured."""
    return sum(size for _, size, _ in _files(store.objects_dir, 1) + _files(store.actions_dir, 2))


def _evict_object(store: Store, path: str, young: float) -> bool:
    trash = f"{store.tmp_dir}/{unique_name('gc-')}"
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        try:
            os.makedirs(store.tmp_dir, exist_ok=True)
            os.rename(path, trash)
        except FileNotFoundError:
            return False  # already gone
    if os.stat(trash).st_mtime >= young:  # refreshed by a get since we looked: put it back
        os.replace(trash, path)
        return False
    os.unlink(trash)
    return True


def gc(
    store: Store,
    max_size: int | None = None,
    *,
    min_free: MinFree | None = None,
    low_water: float = 1.0,
    min_age_s: float | None = None,
    wait: bool = True,
) -> GCResult:
    """Evict least-recently-used files until the store holds at most max_size (default store.max_size) and
    its filesystem has min_free free, as far as evicting can get it there; when the disk is short, down to
    low_water of what leaves min_free."""
    if store.read_only:
        raise CacheError(f"the store {store.root} is open read-only")
    budget = store.max_size if max_size is None else max_size
    min_age = store.min_age_s if min_age_s is None else min_age_s
    os.makedirs(store.root, exist_ok=True)
    lock = lock_file(os.path.join(store.root, "gc.lock"), wait=wait)
    if lock is None:
        return GCResult(ran=False)
    try:
        estimate_before = store.usage.add(0)  # puts landing during the scan are added on top of it
        now = time.time()
        young = now - min_age
        result = GCResult()
        for mtime, _, path in _files(store.tmp_dir, 0):
            if mtime < young and unlink(path):
                result.removed_tmp += 1
        objects = _files(store.objects_dir, 1)
        actions = _files(store.actions_dir, 2)
        total = result.total_before = sum(size for _, size, _ in objects) + sum(s for _, s, _ in actions)
        is_object = {path for _, _, path in objects}
        goal, short = gc_goal(store.root, total, budget, min_free, low_water)
        result.disk_short = short
        for mtime, size, path in sorted(objects + actions) if goal is not None else ():
            if total <= goal:
                break
            if mtime >= young:
                result.kept_young_bytes = total - goal
                break
            if path in is_object:
                if not _evict_object(store, path, young):
                    continue
                result.removed_objects += 1
            elif unlink(path):
                result.removed_actions += 1
            total -= size
            result.removed_bytes += size
        for mtime, size, path in actions:  # entries whose object is gone: evicted, or lost in a crash
            if mtime < young and not _object_present(store, path) and unlink(path):
                result.removed_actions += 1
                total -= size
                result.removed_bytes += size
        result.total_after = total
        if min_free is not None:
            mark_short(store.root, result.removed_bytes < short)  # all it could: do not retry at once
        if result.removed_objects or result.removed_actions:
            store.bump_epoch()
        estimate = store.usage.replace(total, estimate_before)
        # Over again only if writers added while it ran (the owner then runs another gc at its next check);
        # not for young files it may not evict, or every put would start a gc.
        store.over_budget = store.max_size is not None and estimate > max(store.max_size, total)
        return result
    finally:
        unlock_file(lock)


def auto_gc(store: Store) -> GCResult:
    """The gc a writer runs once the store went over its budget or its disk under min_free: down to
    LOW_WATER of the budget, or of what leaves min_free, so that the next puts do not start another at
    once. Skipped if another process is at it."""
    budget = None if store.max_size is None else int(store.max_size * LOW_WATER)
    return gc(store, budget, min_free=store.disk.min_free, low_water=LOW_WATER, wait=False)


def disk_note(result: GCResult, store: Store) -> str | None:
    """What to log when the disk, not the budget, made a gc evict: None otherwise."""
    if not result.disk_short:
        return None
    mib = 1 << 20
    left = f"; {result.kept_young_bytes / mib:.1f} MiB more were used too recently to evict"
    return (
        f"the disk under {store.root} was {result.disk_short / mib:.1f} MiB short of min_free "
        f"{store.disk.min_free}: removed {result.removed_bytes / mib:.1f} MiB of the least "
        f"recently used entries{left if result.kept_young_bytes else ''}"
    )


def _object_present(store: Store, action_path: str) -> bool:
    try:
        with open(action_path, "rb") as f:
            entry = _parse_entry(f.read(256))
    except FileNotFoundError:
        return True  # removed meanwhile: nothing to do
    return entry is not None and os.path.exists(store.path(entry.output_id))


def verify(
    store: Store, verifier: EntryVerifier | None = None, *, drop_unsigned: bool = False
) -> VerifyResult:
    """Rehash every object and check every action entry; remove what is corrupt (unless read-only). With a
    verifier, an entry must also carry a signature of one of its keys: a bad one is removed, an unsigned
    one counted (and removed with drop_unsigned), e.g. to purge a server of what untrusted writers put."""
    result = VerifyResult()
    sizes: dict[str, int] = {}
    for _, size, path in _files(store.objects_dir, 1):
        result.objects += 1
        h = hashlib.sha256()
        try:
            with open(path, "rb", buffering=0) as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except FileNotFoundError:
            continue
        if h.hexdigest() == os.path.basename(path):
            sizes[path] = size
            result.bytes += size
            continue
        result.corrupt_objects += 1
        _remove(store, path, result)
    for _, _, path in _files(store.actions_dir, 2):
        result.actions += 1
        try:
            with open(path, "rb") as f:
                entry = _parse_entry(f.read(256))
        except FileNotFoundError:
            continue
        if entry is None or _object_size(store, entry.output_id, sizes) != entry.size:
            result.bad_actions += 1  # unreadable, dangling, or naming a size its object does not have
            _remove(store, path, result)
            continue
        if verifier is not None:
            namespace, name = path.split("/")[-3], os.path.basename(path)
            try:
                action_id = bytes.fromhex(name)
            except ValueError:  # not a name the store gives an entry
                action_id = b""
            verdict = verifier.check(namespace, action_id, entry.output_id, entry.size, entry.sig)
            result.bad_signatures += verdict == "bad"
            result.unsigned += verdict == "unsigned"
            if verdict == "bad" or (verdict == "unsigned" and drop_unsigned):
                _remove(store, path, result)
    if result.removed and not store.read_only:
        store.bump_epoch()
    return result


def _object_size(store: Store, output_id: bytes, verified: dict[str, int]) -> int | None:
    path = store.path(output_id)
    if path in verified:
        return verified[path]
    try:
        return os.path.getsize(path)  # put after our scan: not rehashed, but not dangling either
    except FileNotFoundError:
        return None


def _remove(store: Store, path: str, result: VerifyResult) -> None:
    result.removed.append(path)
    if not store.read_only:
        unlink(path)


def remove_tree(directory: str, trash: str, depth: int = 0) -> int:
    """Remove directory whole: renamed to trash (same filesystem) first, so that a reader sees it whole or
    not at all, never half removed. Returns how many files were `depth` levels below it (0: it was absent)."""
    try:
        os.rename(directory, trash)
    except FileNotFoundError:
        return 0
    found = len(_files(trash, depth))
    shutil.rmtree(trash, ignore_errors=True)
    return found


def clear_namespace(store: Store, namespace: str) -> int:
    """Drop every action entry of namespace, and the traces a cache server keeps of it; returns how many
    entries. Objects stay: they are shared, named by their hash, and gc reclaims what nothing uses. A put
    racing with it recreates its directory (files.place) and is kept."""
    check_namespace(namespace)
    if store.read_only:
        raise CacheError(f"{store.root} is opened read-only")
    os.makedirs(store.tmp_dir, exist_ok=True)
    trash = f"{store.tmp_dir}/{unique_name('cleared-')}"
    dropped = remove_tree(os.path.join(store.actions_dir, namespace), f"{trash}-actions", depth=1)
    remove_tree(os.path.join(store.root, "traces", namespace), f"{trash}-traces")
    store.bump_epoch()
    return dropped
