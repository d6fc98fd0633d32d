"""Directory intake: copy the user's tree into the build's directory, which is the only copy the build sees.

The user's directory is only ever read. VCS metadata stays behind; symlinks are copied as symlinks only when
they stay inside the tree (so the build can't read or write through them into the rest of the machine);
fifos, sockets and devices are refused, since reading one could block or reach hardware.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from gocaas.errors import BadInput
from gocaas.settings import Settings
from gocaas.source.git import describe_worktree
from gocaas.source.workspace import VCS_DIRS, Checkout, find_module_root, link_escapes

_WHAT = "directory entry"


def copy_directory(source: Path, dest: Path, settings: Settings) -> Checkout:
    """Copy `source` into the existing, empty `dest`; describe/commit come from git when it is a checkout."""
    if not source.exists():
        raise BadInput(f"no such directory: {source}", kind="no_source")
    if not source.is_dir():
        raise BadInput(f"not a directory: {source}", kind="no_source")
    real_root = Path(os.path.realpath(source))
    try:
        # Fail before copying anything when there is nothing to build.
        find_module_root(real_root, label=str(source))
        info = describe_worktree(real_root, settings)
        _copy_tree(real_root, dest, real_root, "")
    except PermissionError as exc:
        if (refusal := unreadable(exc, real_root, str(source))) is None:
            raise
        raise refusal from exc
    return Checkout(find_module_root(dest, label=str(source)), info.describe, info.commit)


def unreadable(exc: PermissionError, root: Path, label: str) -> BadInput | None:
    """The BadInput for a part of the user's tree at `root` that can't be read, named relative to it (the
    tree itself as `label`); None when the error is about a path outside the tree, such as our own copy."""
    named = exc.filename
    path = Path(named) if isinstance(named, (str, os.PathLike)) else root
    # Without search permission on its directory nothing in it can be looked at: blame the directory.
    if path != root and path.parent.is_relative_to(root) and not os.access(path.parent, os.X_OK):
        path = path.parent
    if not path.is_relative_to(root):
        return None
    rel = path.relative_to(root).as_posix()
    verb = "list" if os.path.isdir(path) else "read"  # noqa: PTH112 - never raises, unlike Path.is_dir
    return BadInput(f"cannot {verb} {label if rel == '.' else rel}: permission denied", kind="no_source")


def _copy_tree(directory: Path, target: Path, real_root: Path, prefix: str) -> None:
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        if entry.name in VCS_DIRS:
            continue
        rel = f"{prefix}{entry.name}"
        src, dst = Path(entry.path), target / entry.name
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            link = os.readlink(src)  # noqa: PTH115 - Path.readlink would normalize the text
            if link_escapes(rel, link) or not Path(os.path.realpath(src)).is_relative_to(real_root):
                raise BadInput(f"{_WHAT} '{rel}': symlink points outside the directory ({link})")
            dst.symlink_to(link)
        elif stat.S_ISDIR(mode):
            dst.mkdir()
            # Directory modes stay the default: a read-only copy would keep the build from cleaning up.
            _copy_tree(src, dst, real_root, rel + "/")
        elif stat.S_ISREG(mode):
            shutil.copy2(src, dst, follow_symlinks=False)
        else:
            raise BadInput(f"{_WHAT} '{rel}': fifos, sockets and devices are not allowed")
