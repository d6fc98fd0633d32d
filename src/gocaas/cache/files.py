"""Small file operations shared by the store and its maintenance: os only, for the same start-up reason.

Temp files are named `<pid>.<random>-<n>` in the store's tmp/ directory, created 0777 & ~umask (objects
must be executable: linked binaries come out of the cache and are run), and moved into place with
os.replace, which is atomic within one filesystem. The pid alone is not unique: cacheprogs started by
sandboxed go commands each live in a PID namespace of their own, where they all have the same small pid.
"""

# ruff: noqa: PTH103, PTH105, PTH108, PTH110, PTH120

from __future__ import annotations

import os
from itertools import count

_seq = count()
_tag = ""
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def sha256(data: bytes = b""):  # type: ignore[no-untyped-def]
    """A SHA-256 hasher (of data so far): OpenSSL's, ~5x faster than _sha256; hashlib is loaded only once
    something hashes."""
    from hashlib import sha256 as new

    return new(data)


def process_tag() -> str:
    """`<pid>.<random>`: names this process's temp files apart from every other process's, including one
    with the same pid in another PID namespace, and from a forked parent's."""
    global _tag
    pid = f"{os.getpid()}."
    if not _tag.startswith(pid):
        _tag = pid + os.urandom(6).hex()
    return _tag


def unique_name(prefix: str = "") -> str:
    """prefix + a name no other process, and no earlier call in this one, produces."""
    return f"{prefix}{process_tag()}-{next(_seq)}"


def mktemp(directory: str, prefix: str = "") -> tuple[int, str]:
    """A new file in directory (created if missing), open for writing: (fd, path)."""
    name = f"{directory}/{unique_name(prefix)}"
    try:
        return os.open(name, _FLAGS, 0o777), name
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
        return os.open(name, _FLAGS, 0o777), name


def place(tmp: str, dest: str) -> None:
    """Rename tmp to dest atomically, creating dest's directory if it is missing."""
    try:
        os.replace(tmp, dest)
    except FileNotFoundError:
        if not os.path.exists(tmp):
            raise
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(tmp, dest)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def unlink(path: str) -> bool:
    """Remove a file; False if it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def touch(path: str) -> bool:
    """Set a file's times to now; False if it is gone."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def lock_file(path: str, *, wait: bool = True) -> int | None:
    """An exclusive flock on path (created if missing): the open fd, or None if busy and not waiting."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def unlock_file(fd: int) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class ObjectWriter:
    """A temp file receiving one body while hashing it (see Store.writer and Store.commit)."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd, self.path = fd, path
        self.size = 0
        self._hash = sha256()

    def write(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        write_all(self.fd, data)
        self.size += len(data)

    def digest(self) -> bytes:
        return self._hash.digest()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def abort(self) -> None:
        self.close()
        unlink(self.path)
