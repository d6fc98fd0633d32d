"""The fast directory sync: unchanged files are not copied, and the result is exactly what the full intake
would give (same files, same digest)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gocaas.settings import Settings
from gocaas.source import source_digest
from gocaas.source.fastsync import fast_sync
from gocaas.source.stable import MANIFEST
from tests.source.builders import run_unprivileged


def _tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "go.mod").write_text("module example.test/fast\n\ngo 1.21\n")
    (root / "pkg" / "a.go").write_text("package pkg\n")
    (root / "pkg" / "b.go").write_text("package pkg\n\nconst B = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_second_sync_copies_nothing_and_matches_the_full_digest(tmp_path: Path) -> None:
    src, work = _tree(tmp_path / "src"), tmp_path / "ws" / "src"
    settings = Settings(home=tmp_path / "home")
    record = work.parent / MANIFEST
    result = fast_sync(src, work, record, settings)
    assert result is not None
    workspace, synced = result
    assert synced.written == 4 and synced.changed is None  # a first build: everything is new
    assert workspace.digest == source_digest(src)[0]  # the full intake's digest, .git left out
    assert _files(work) == {k: v for k, v in _files(src).items() if not k.startswith(".git/")}
    assert os.access(work / "run.sh", os.X_OK)

    again = fast_sync(src, work, record, settings)
    assert again is not None
    assert (again[1].kept, again[1].written, again[1].removed) == (4, 0, 0)
    assert again[0].digest == workspace.digest


def test_changes_in_the_source_and_in_the_workspace_are_both_noticed(tmp_path: Path) -> None:
    src, work = _tree(tmp_path / "src"), tmp_path / "ws" / "src"
    settings = Settings(home=tmp_path / "home")
    record = work.parent / MANIFEST
    assert fast_sync(src, work, record, settings) is not None
    (src / "pkg" / "b.go").write_text("package pkg\n\nconst B = 2\n")  # edited
    (src / "pkg" / "a.go").unlink()  # deleted
    (work / "run.sh").write_text("tampered by a test\n")  # a build wrote into the workspace
    (work / "pkg" / "leftover.txt").write_text("x")  # ... and left a file behind
    result = fast_sync(src, work, record, settings)
    assert result is not None
    workspace, synced = result
    assert synced.changed == ("pkg/a.go", "pkg/b.go", "pkg/leftover.txt", "run.sh")
    assert _files(work) == {k: v for k, v in _files(src).items() if not k.startswith(".git/")}
    assert workspace.digest == source_digest(src)[0]


def test_links_and_missing_go_mod_take_the_full_intake(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    src = _tree(tmp_path / "src")
    (src / "link").symlink_to("pkg/a.go")
    assert fast_sync(src, tmp_path / "ws1" / "src", tmp_path / "ws1" / MANIFEST, settings) is None
    bare = tmp_path / "bare"
    shutil.copytree(src, bare, symlinks=True)
    (bare / "link").unlink()
    (bare / "go.mod").unlink()
    assert fast_sync(bare, tmp_path / "ws2" / "src", tmp_path / "ws2" / MANIFEST, settings) is None


# --- what can't be read ---------------------------------------------------------------------------------
# Each case once through the fast sync and once through the full intake (a symlink in the tree sends the
# build there), which must agree.


@pytest.mark.parametrize("how", ["fast", "full"])
def test_unreadable_subdirectory_is_refused_not_skipped(how: str, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    (src / "secret").mkdir()
    (src / "secret" / "key.go").write_text("package secret\n")
    if how == "full":
        (src / "link").symlink_to("run.sh")
    (src / "secret").chmod(0)
    try:
        said = run_unprivileged(how, src, tmp_path / "work")
    finally:
        (src / "secret").chmod(0o755)
    assert said == "BadInput: cannot list secret: permission denied"


@pytest.mark.parametrize("how", ["fast", "full"])
def test_unreadable_file_is_named_relative_to_the_module(how: str, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    if how == "full":
        (src / "link").symlink_to("run.sh")
    (src / "pkg" / "b.go").chmod(0)
    said = run_unprivileged(how, src, tmp_path / "work")
    assert said == "BadInput: cannot read pkg/b.go: permission denied"


@pytest.mark.parametrize("mode", [0o000, 0o311], ids=["no access", "enter but not list"])
def test_unreadable_module_directory_is_named(mode: int, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    src.chmod(mode)
    try:
        said = run_unprivileged("fast", src, tmp_path / "work")
    finally:
        src.chmod(0o755)
    # Not the workspace's path, and not a go.mod missing later on.
    assert said == f"BadInput: cannot list {src}: permission denied"


def test_readable_tree_still_syncs_without_privileges(tmp_path: Path) -> None:
    """The check of the cases above: the same process reads a readable tree."""
    src = _tree(tmp_path / "src")
    assert run_unprivileged("fast", src, tmp_path / "work") == "no error, 4 files"
