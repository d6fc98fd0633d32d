"""The Workspace an intake produces, where the Go module sits inside it, and the symlink rule every intake
method shares: a link may point anywhere inside the source tree and nowhere else."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from gocaas.errors import BadInput

# Version-control metadata: never copied into a workspace, never part of the digest.
VCS_DIRS: frozenset[str] = frozenset({".git", ".hg", ".svn"})

# macOS archivers put resource forks next to the real top directory; it never holds the module.
_IGNORED_TOP_LEVEL: frozenset[str] = frozenset({"__MACOSX"})


@dataclass(frozen=True)
class Workspace:
    """A private copy of the source, ready to build.

    root: the module root inside the build's directory (it holds go.mod)
    digest: "sha256:<64 hex>" over the files that affect the build (see gocaas.source.digest)
    file_count: how many files and symlinks the digest covers
    describe: `git describe --tags --always --dirty` of the source when it came from git, else None
    commit: the full commit sha when known, else None
    changed_files: with SourceSpec.changed_since, the files changed since that ref (relative to the module
        root), else None
    """

    root: Path
    digest: str
    file_count: int
    describe: str | None
    commit: str | None
    changed_files: tuple[str, ...] | None = None
    manifest: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Checkout:
    """What one intake method produced, before it is digested."""

    root: Path
    describe: str | None = None
    commit: str | None = None


def find_module_root(top: Path, *, label: str, allow_single_dir: bool = False) -> Path:
    """The directory holding go.mod: `top` itself or, with allow_single_dir (GitHub-style tarballs), the one
    directory that is all `top` contains."""
    if (top / "go.mod").is_file():
        return top
    if allow_single_dir:
        entries = [entry for entry in top.iterdir() if entry.name not in _IGNORED_TOP_LEVEL]
        if len(entries) == 1:
            only = entries[0]
            if only.is_dir() and not only.is_symlink() and (only / "go.mod").is_file():
                return only
    raise BadInput(f"no go.mod at the top of {label}", kind="no_module")


def link_escapes(rel_link: str, target: str) -> bool:
    """Whether a symlink at `rel_link` (POSIX, relative to the tree) pointing at `target` leaves the tree,
    judged on the text alone. Absolute targets always count as leaving: in a copy they would point back
    into the original."""
    if not target or "\0" in target or target.startswith("/"):
        return True
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel_link), target))
    return joined == ".." or joined.startswith("../")


def check_symlinks(root: Path, *, what: str) -> None:
    """Refuse any symlink under `root` that points outside it, textually or once chains of links are
    followed (`a -> .` plus `b -> a/..` passes a textual check but lands outside)."""
    real_root = Path(os.path.realpath(root))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(dirpath, name)
            if not path.is_symlink():
                continue
            rel = path.relative_to(root).as_posix()
            target = os.readlink(path)  # noqa: PTH115 - Path.readlink would normalize the text
            if link_escapes(rel, target) or not Path(os.path.realpath(path)).is_relative_to(real_root):
                raise BadInput(f"{what} '{rel}': symlink points outside the source ({target})")
