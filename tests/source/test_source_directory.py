"""Directory intake: a private copy, the user's tree left exactly as it was, links kept inside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gocaas.errors import BadInput, InfraError
from gocaas.settings import Settings
from gocaas.source import intake
from gocaas.spec import SourceKind, SourceSpec
from tests.source.builders import GO_MOD, git, snapshot, write_module


def dir_spec(path: Path) -> SourceSpec:
    return SourceSpec(kind=SourceKind.DIRECTORY, location=str(path))


def test_copy_is_complete_and_private(tmp_path: Path, dest: Path, settings: Settings) -> None:
    user = write_module(tmp_path / "user")
    before = snapshot(user)
    workspace = intake(dir_spec(user), dest, settings)
    assert workspace.root == dest
    assert snapshot(user) == before
    copied = snapshot(dest)
    assert set(copied) == set(before)
    assert (dest / "scripts" / "main.go.link").readlink() == Path("../main.go")
    assert os.access(dest / "scripts" / "run.sh", os.X_OK)
    assert workspace.file_count == 5
    assert workspace.describe is None and workspace.commit is None
    # The build writing into its copy never reaches the user's tree.
    (dest / "main.go").write_text("package main // changed by the build\n")
    assert snapshot(user) == before


def test_git_checkout_is_described_and_left_untouched(tmp_path: Path, dest: Path, settings: Settings) -> None:
    user = write_module(tmp_path / "user")
    git(user, "init", "-q")
    git(user, "add", "-A")
    git(user, "commit", "-q", "-m", "first")
    git(user, "tag", "-a", "v0.1.0", "-m", "v0.1.0")
    sha = git(user, "rev-parse", "HEAD")
    # Stat info no longer matches the index: `git describe --dirty` would refresh and rewrite the index here.
    os.utime(user / "main.go", (1_000_000, 1_000_000))
    before = snapshot(user)
    workspace = intake(dir_spec(user), dest, settings)
    assert workspace.describe == "v0.1.0"
    assert workspace.commit == sha
    assert not (dest / ".git").exists()
    assert snapshot(user) == before  # .git/index included: describe must not rewrite it


def test_a_module_in_a_subdirectory_is_described_from_its_repository(
    tmp_path: Path, dest: Path, settings: Settings
) -> None:
    repo = tmp_path / "repo"
    user = write_module(repo / "services" / "api")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    git(repo, "tag", "-a", "v2.0.0", "-m", "v2.0.0")
    workspace = intake(dir_spec(user), dest, settings)
    assert workspace.describe == "v2.0.0"
    assert workspace.commit == git(repo, "rev-parse", "HEAD")
    plain = write_module(tmp_path / "plain" / "api")  # no repository anywhere above it
    assert intake(dir_spec(plain), tmp_path / "ws-plain", settings).describe is None


def test_dirty_checkout(tmp_path: Path, settings: Settings) -> None:
    user = write_module(tmp_path / "user")
    git(user, "init", "-q")
    git(user, "add", "-A")
    git(user, "commit", "-q", "-m", "first")
    sha = git(user, "rev-parse", "HEAD")
    (user / "untracked.go").write_text("package main\n")
    clean = intake(dir_spec(user), tmp_path / "ws1", settings)
    # No tags: --always gives the abbreviated commit; untracked files don't make it dirty.
    assert clean.describe == sha[:7]
    (user / "main.go").write_text("package main\n\nfunc main() {}\n")
    before = snapshot(user)
    dirty = intake(dir_spec(user), tmp_path / "ws2", settings)
    assert dirty.describe == sha[:7] + "-dirty"
    assert dirty.commit == sha
    assert snapshot(user) == before
    assert (tmp_path / "ws2" / "untracked.go").is_file()  # the copy is of the directory, not of the commit


def test_vcs_metadata_excluded(tmp_path: Path, dest: Path, settings: Settings) -> None:
    user = write_module(tmp_path / "user")
    for name in (".git", ".hg", ".svn"):
        (user / name).mkdir()
        (user / name / "config").write_text("secret\n")
    (user / "internal" / ".git").write_text("gitdir: ../elsewhere\n")  # a submodule's .git file
    workspace = intake(dir_spec(user), dest, settings)
    assert not any((dest / name).exists() for name in (".git", ".hg", ".svn"))
    assert not (dest / "internal" / ".git").exists()
    assert workspace.file_count == 5


@pytest.mark.parametrize(
    "target", ["../outside.txt", "../../etc/passwd", "/etc/passwd", "sub/../../outside.txt"]
)
def test_symlink_outside_refused(target: str, tmp_path: Path, dest: Path, settings: Settings) -> None:
    user = write_module(tmp_path / "user")
    (tmp_path / "outside.txt").write_text("secret\n")
    (user / "sub").mkdir()
    (user / "leak").symlink_to(target)
    with pytest.raises(BadInput, match="directory entry 'leak': symlink points outside"):
        intake(dir_spec(user), dest, settings)


def test_symlink_chain_escape_refused(tmp_path: Path, dest: Path, settings: Settings) -> None:
    user = write_module(tmp_path / "user")
    (user / "p").mkdir()
    (user / "p" / "q").symlink_to("..")
    (user / "x").symlink_to("p/q/..")  # textually "p", really the parent of the tree
    with pytest.raises(BadInput, match="directory entry 'x': symlink points outside"):
        intake(dir_spec(user), dest, settings)


def test_symlinked_directory_kept_as_link(tmp_path: Path, dest: Path, settings: Settings) -> None:
    user = write_module(tmp_path / "user")
    (user / "alias").symlink_to("internal")
    intake(dir_spec(user), dest, settings)
    assert (dest / "alias").is_symlink()
    assert (dest / "alias" / "util" / "util.go").is_file()


def test_fifo_refused(tmp_path: Path, dest: Path, settings: Settings) -> None:
    user = write_module(tmp_path / "user")
    os.mkfifo(user / "pipe")
    with pytest.raises(BadInput, match="directory entry 'pipe': fifos, sockets and devices"):
        intake(dir_spec(user), dest, settings)


def test_missing_and_not_a_directory(tmp_path: Path, dest: Path, settings: Settings) -> None:
    with pytest.raises(BadInput, match="no such directory"):
        intake(dir_spec(tmp_path / "missing"), dest, settings)
    (tmp_path / "file").write_bytes(GO_MOD)
    with pytest.raises(BadInput, match="not a directory"):
        intake(dir_spec(tmp_path / "file"), tmp_path / "ws2", settings)


def test_no_go_mod(tmp_path: Path, dest: Path, settings: Settings) -> None:
    user = tmp_path / "user"
    (user / "mod").mkdir(parents=True)
    (user / "mod" / "go.mod").write_bytes(GO_MOD)
    with pytest.raises(BadInput, match=r"no go\.mod at the top of"):
        intake(dir_spec(user), dest, settings)


def test_ref_only_for_git(tmp_path: Path, dest: Path, settings: Settings) -> None:
    user = write_module(tmp_path / "user")
    with pytest.raises(BadInput, match="only applies to git"):
        intake(SourceSpec(kind=SourceKind.DIRECTORY, location=str(user), ref="main"), dest, settings)


def test_dest_must_be_empty(tmp_path: Path, dest: Path, settings: Settings) -> None:
    user = write_module(tmp_path / "user")
    dest.mkdir(parents=True)
    (dest / "leftover").write_text("x")
    with pytest.raises(InfraError, match="not empty"):
        intake(dir_spec(user), dest, settings)
