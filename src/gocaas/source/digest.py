"""The source digest: one sha256 over everything in a module tree that can change a build.

The format is stable (changing it changes every digest there is):

1. Walk the module root, skipping .git, .hg and .svn (files or directories) at any depth. Symlinks are not
   followed; a symlink to a directory is recorded as a symlink.
2. Sort the regular files and symlinks by their path relative to the root, in POSIX form, as UTF-8 bytes.
3. Feed sha256, for each entry in that order:
   - regular file: b"f\\0" + path + b"\\0" + (b"x" if owner-executable else b"-") + b"\\0"
     + sha256(content).digest()
   - symlink:      b"l\\0" + path + b"\\0" + target   (the link text as stored, not what it points at)
4. The digest is "sha256:" + the hex digest; the file count is the number of entries fed.

Directories count only through the paths of what they hold (empty directories don't count); times, owners
and all mode bits but the owner's execute bit are ignored. So the same content at the same paths gives the
same digest whether it came from a directory, a zip or a tar.gz, while a changed byte, a renamed file, a
changed execute bit or a changed link target gives a different one.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from gocaas.errors import BadInput
from gocaas.source.workspace import VCS_DIRS


def source_digest(root: Path) -> tuple[str, int]:
    """Return ("sha256:<hex>", file_count) for the tree at `root`."""
    digest, manifest = digest_with_manifest(root)
    return digest, len(manifest)


def digest_with_manifest(root: Path) -> tuple[str, dict[str, str]]:
    """The digest, and each entry's own hash by relative path: "f:<x|->:<sha256 hex>" for a file,
    "l:<target>" for a symlink (what the workspace sync and `gocaas cache explain` compare)."""
    entries = sorted(_walk(root, ""), key=lambda entry: entry[0])
    total = hashlib.sha256()
    manifest: dict[str, str] = {}
    for rel, path, mode in entries:
        if stat.S_ISLNK(mode):
            target = os.readlink(path)  # noqa: PTH115 - Path.readlink would normalize the text
            total.update(b"l\0" + rel + b"\0" + os.fsencode(target))
            manifest[os.fsdecode(rel)] = f"l:{target}"
        else:
            with path.open("rb") as handle:
                content = hashlib.file_digest(handle, "sha256").digest()
            executable = b"x" if mode & stat.S_IXUSR else b"-"
            total.update(b"f\0" + rel + b"\0" + executable + b"\0" + content)
            manifest[os.fsdecode(rel)] = f"f:{executable.decode()}:{content.hex()}"
    return "sha256:" + total.hexdigest(), manifest


def _walk(directory: Path, prefix: str) -> Iterator[tuple[bytes, Path, int]]:
    """Yield (relative path as UTF-8 bytes, path, lstat mode) for every file and symlink below."""
    with os.scandir(directory) as scan:
        for entry in scan:
            if entry.name in VCS_DIRS:
                continue
            rel = f"{prefix}{entry.name}"
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                yield from _walk(Path(entry.path), rel + "/")
            elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                yield os.fsencode(rel), Path(entry.path), mode
            else:
                # Intake never produces these; a tree that has one is not something we can build.
                raise BadInput(f"source entry '{rel}': not a regular file, directory or symlink")
