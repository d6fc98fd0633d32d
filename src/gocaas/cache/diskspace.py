"""The store's budget yields to the disk: `min_free`, the space its filesystem must keep free.

A size budget alone does not keep a cache from filling a disk: a 10 GiB budget on a CI runner with 8 GiB
free ends in `no space left on device`, for the cache and for everything else the build writes. So a
writer also checks the free space (statvfs, what an unprivileged user may still use) as it writes
(DiskWatch: more often as the room above min_free shrinks) and at its end; under `min_free`, the
automatic gc evicts least-recently-used entries until the disk is back above it, and a tenth of the store
more (maintenance.auto_gc), whatever the budget says. A gc that could not get there (everything left was
used within min_age) marks the store, and free space does not start another for RETRY_S: each would scan
the whole store for nothing.

os only, for cacheprog's start-up time.
"""

# ruff: noqa: PTH108, PTH116, PTH120 - str paths and os calls, as in store.py

from __future__ import annotations

import os
import time

RETRY_S = 60.0
MIN_CHECK = 1 << 20  # bytes written between two looks at the disk, at least
DEFAULT_MIN_FREE_TEXT = "5%"
SHORT_MARK = "gc-short"  # in the store: touched by a gc that ended with the disk still under min_free


class MinFree:
    """Space to keep free on the store's filesystem: a number of bytes, or a fraction of its size."""

    __slots__ = ("fraction", "nbytes")

    def __init__(self, nbytes: int = 0, fraction: float = 0.0) -> None:
        self.nbytes, self.fraction = nbytes, fraction

    @classmethod
    def parse(cls, text: str) -> MinFree | None:
        """ "5%" (of the filesystem), "2G", "500M", "0" (None: no minimum); ValueError naming the text."""
        t = text.strip()
        if t.endswith("%"):
            try:
                percent = float(t[:-1])
            except ValueError:
                percent = -1.0
            if not 0 <= percent < 100:  # also NaN
                raise ValueError(f"bad free space {text!r}: a percentage must be from 0 to below 100")
            return cls(fraction=percent / 100) if percent else None
        from gocaas.cache.options import parse_size

        try:
            nbytes = parse_size(t)
        except ValueError:
            raise ValueError(f"bad free space {text!r}: want a size such as 20G, or a percentage of the "
                             "filesystem such as 5%") from None  # fmt: skip
        return cls(nbytes=nbytes) if nbytes else None

    def bytes_on(self, total: int) -> int:
        """The bytes to keep free on a filesystem of total bytes."""
        return max(self.nbytes, int(total * self.fraction))

    def __str__(self) -> str:
        """As parse reads it: "5%", "20G", "1536M", "1000"."""
        if self.fraction:
            return f"{self.fraction * 100:g}%"
        for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
            if self.nbytes and self.nbytes % (1 << shift) == 0:
                return f"{self.nbytes >> shift}{unit}"
        return str(self.nbytes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MinFree) and (self.nbytes, self.fraction) == (other.nbytes, other.fraction)

    def __hash__(self) -> int:
        return hash((self.nbytes, self.fraction))


DEFAULT_MIN_FREE = MinFree.parse(DEFAULT_MIN_FREE_TEXT)


def free_space(path: str) -> tuple[int, int]:
    """(bytes an unprivileged user may still write, size) of the filesystem holding path, or of its
    nearest existing parent (a store not made yet)."""
    while True:
        try:
            st = os.statvfs(path)
            return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent == path:
                raise
            path = parent


def shortfall(root: str, min_free: MinFree | None) -> int:
    """The bytes to free on root's filesystem to have min_free free again; 0 if it has."""
    if min_free is None:
        return 0
    free, total = free_space(root)
    return max(0, min_free.bytes_on(total) - free)


def gc_goal(
    root: str, total: int, budget: int | None, min_free: MinFree | None, low_water: float = 1.0
) -> tuple[int | None, int]:
    """What a gc should bring `total` bytes down to (None: nothing to do), and the disk's shortfall: the
    budget, or less when root's disk is short of min_free: total less the shortfall, times low_water."""
    short = shortfall(root, min_free)
    if not short:
        return budget, 0
    fits = max(0, int((total - short) * low_water))
    return (fits if budget is None else min(budget, fits)), short


class DiskWatch:
    """Whether a writer's disk is under min_free, looked at (statvfs) as often as the room it had above
    min_free calls for: again once half of that room has been written (MIN_CHECK at least), or whenever
    asked (`short`, at a writer's end). Not short either when a gc ended short of it within RETRY_S: that
    gc evicted what it could."""

    __slots__ = ("_unchecked", "min_free", "root")

    def __init__(self, root: str, min_free: MinFree | None) -> None:
        self.root, self.min_free = root, min_free
        self._unchecked = 0  # bytes to write before looking again

    def wrote(self, nbytes: int) -> bool:
        self._unchecked -= nbytes
        return self._unchecked <= 0 and self.short()

    def short(self) -> bool:
        if self.min_free is None:
            self._unchecked = 1 << 62
            return False
        free, total = free_space(self.root)
        room = free - self.min_free.bytes_on(total)
        self._unchecked = max(MIN_CHECK, room // 2)
        if room >= 0:
            return False
        try:
            return time.time() - os.stat(f"{self.root}/{SHORT_MARK}").st_mtime >= RETRY_S
        except OSError:
            return True


def mark_short(root: str, short: bool) -> None:
    """Record how a gc ended: still under min_free (short) or not."""
    path = f"{root}/{SHORT_MARK}"
    try:
        if short:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
            os.utime(path)
        else:
            os.unlink(path)
    except OSError:  # gone already, or a read-only directory: only a hint
        pass
