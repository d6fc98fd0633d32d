"""Replacing a file whole: write a temp file next to it, rename it over the file. A reader sees the old
file or the new one, never half of one; and when the writing fails (a full disk, a crash of the writer's
code), the temp file is removed, so nothing half-written is left behind either."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(dest: Path) -> Iterator[Path]:
    """A temp path next to dest (same filesystem, hidden, unique to this writer) to write in the block;
    renamed over dest when the block ends, removed if it raises."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
