"""Packing a module directory for upload: a .tar.gz of what belongs to the source.

Inside a git work tree that is what git would commit — tracked files plus untracked ones that are not
ignored (`git ls-files --cached --others --exclude-standard`); elsewhere every file but `.git/`. Symbolic
links are stored as links (never followed), and only when they point inside the directory; special files
are left out. The archive is deterministic — sorted entries, fixed owners and times, gzip without a
timestamp — so the same source makes the same bytes, and the server recognises a repeated submission.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gocaas.errors import BadInput

__all__ = ["Packed", "pack_directory"]

_MTIME: Final = 946_684_800  # 2000-01-01: the server derives its files' times from their content anyway
_GIT_TIMEOUT: Final = 120.0


@dataclass(frozen=True)
class Packed:
    path: Path
    size: int  # bytes of the .tar.gz
    files: int  # entries archived
    source_bytes: int  # bytes of the files before compression
    from_git: bool  # the file list came from git (ignored files left out)
    skipped: tuple[str, ...]  # what was left out and why, e.g. a link pointing outside

    def describe(self) -> str:
        how = "tracked and unignored files (git)" if self.from_git else "all files"
        return (
            f"packed {self.files} files ({how}, {human_size(self.source_bytes)}) into a "
            f"{human_size(self.size)} archive"
        )


def human_size(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def pack_directory(directory: Path, dest: Path) -> Packed:
    """Write `directory` (a Go module's root) to the .tar.gz `dest`; BadInput without a go.mod."""
    root = directory.resolve()
    if not root.is_dir():
        raise BadInput(f"{directory} is not a directory", kind="no_source")
    if not (root / "go.mod").is_file():
        raise BadInput(
            f"{directory} has no go.mod: not a Go module's root (give the directory holding go.mod)",
            kind="no_go_mod",
        )
    names, from_git = _listing(root)
    if "go.mod" not in names:
        raise BadInput(f"{directory}/go.mod is ignored by git: it would not be uploaded", kind="no_go_mod")
    skipped: list[str] = []
    files = total = 0
    with (
        dest.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in sorted(names):
            added = _add(tar, root, name, skipped)
            if added is not None:
                files += 1
                total += added
    return Packed(dest, dest.stat().st_size, files, total, from_git, tuple(skipped))


def _listing(root: Path) -> tuple[set[str], bool]:
    """The relative POSIX paths to archive, and whether git chose them."""
    git = shutil.which("git")
    in_work_tree = any((p / ".git").exists() for p in (root, *root.parents))
    if git is None:
        if in_work_tree:
            raise BadInput(
                f"{root} is in a git work tree but git is not installed, so .gitignore cannot be honoured: "
                "install git, or submit an archive",
                kind="no_git",
            )
        return _walk(root), False
    done = subprocess.run(  # noqa: S603 -- an argument list, git from PATH, no shell
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        timeout=_GIT_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        if "not a git repository" in message and not in_work_tree:
            return _walk(root), False
        raise BadInput(f"git ls-files failed in {root}: {message}", kind="git_failed")
    names = {n for n in done.stdout.decode(errors="surrogateescape").split("\0") if n}
    return names, True


def _walk(root: Path) -> set[str]:
    names: set[str] = set()
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        dirs[:] = [d for d in dirs if d != ".git"]
        # A link to a directory shows among `dirs` and is not descended into: archive it as a link.
        linked = [d for d in dirs if (here / d).is_symlink()]
        for name in [*files, *linked]:
            names.add((here / name).relative_to(root).as_posix())
    return names


def _add(tar: tarfile.TarFile, root: Path, name: str, skipped: list[str]) -> int | None:
    """Archive one entry; the bytes it adds, or None when it was left out."""
    path = root / name
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None  # tracked but deleted in the work tree: git would not commit it either
    entry = tarfile.TarInfo(name)
    entry.mtime, entry.uid, entry.gid, entry.uname, entry.gname = _MTIME, 0, 0, "", ""
    if stat.S_ISLNK(info.st_mode):
        try:
            target = path.resolve()
        except (OSError, RuntimeError):
            skipped.append(f"{name}: a symbolic link loop")
            return None
        if not target.is_relative_to(root):
            skipped.append(f"{name}: a symbolic link to {path.readlink()}, outside the module")
            return None
        entry.type = tarfile.SYMTYPE
        entry.linkname = os.path.relpath(target, path.parent)
        entry.mode = 0o777
        tar.addfile(entry)
        return 0
    if stat.S_ISDIR(info.st_mode):
        skipped.append(f"{name}: a nested repository or submodule")
        return None
    if not stat.S_ISREG(info.st_mode):
        skipped.append(f"{name}: not a regular file")
        return None
    entry.size = info.st_size
    entry.mode = 0o755 if info.st_mode & stat.S_IXUSR else 0o644
    with path.open("rb") as handle:
        tar.addfile(entry, handle)
    return info.st_size
