"""A store's usage estimate: the `usage` file under its root, the total bytes of its files as the writers
report them. Each process that writes the store adds what it wrote, every ACCOUNT_EVERY bytes and at its
end (Store.flush_usage); each gc rewrites it from what it measured (maintenance.py). One small file under an
flock, shared by every process: far cheaper than a scan, and near enough to tell when a gc is due.

Imports only os and files.py at load, as store.py does (the GOCACHEPROG program starts with every go command).
"""

# ruff: noqa: PTH103, PTH120, PTH123 - str paths and os calls, as in store.py

from __future__ import annotations

import os

from gocaas.cache.files import lock_file, unlock_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class UsageFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> int:
        """The estimate as it stands, without the lock (for a display or a scrape)."""
        try:
            with open(self.path, "rb") as f:
                return int(f.read(64) or b"0")
        except (OSError, ValueError):
            return 0

    def add(self, added: int) -> int:
        """Add bytes to the estimate; return the new estimate."""
        return self._update(lambda current: (current or 0) + added)

    def write(self, total: int) -> None:
        self._update(lambda _current: total)

    def replace(self, measured: int, estimate_before: int) -> int:
        """After a gc measured `measured` bytes by scanning: the new estimate is that plus what other
        writers added to the shared estimate since it read `estimate_before` (their files may have landed
        after the scan saw the directory). Returns the new estimate."""

        def new(current: int | None) -> int:
            added_since = 0 if current is None else max(0, current - estimate_before)
            return measured + added_since

        return self._update(new)

    def _update(self, new: Callable[[int | None], int]) -> int:
        """Under the lock: the estimate becomes new(the current one, None if unreadable)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = lock_file(self.path)
        try:
            try:
                current: int | None = int(os.read(fd, 64) or b"0")
            except ValueError:
                current = None
            total = new(current)
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{total}\n".encode())
            return total
        finally:
            unlock_file(fd)
