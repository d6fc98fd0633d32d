"""The source digest: the same files give the same digest from any source; any change that matters to a
build changes it."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gocaas.settings import Settings
from gocaas.source import intake, source_digest
from gocaas.spec import SourceKind, SourceSpec
from tests.source.builders import tar_of, write_module, zip_of


def test_format_is_pinned(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.go").write_bytes(b"package a\n")
    (tmp_path / "b" / "run").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "b" / "run").chmod(0o755)
    (tmp_path / "c").symlink_to("a.go")
    expected = hashlib.sha256()
    expected.update(b"f\0a.go\0-\0" + hashlib.sha256(b"package a\n").digest())
    expected.update(b"f\0b/run\0x\0" + hashlib.sha256(b"#!/bin/sh\n").digest())
    expected.update(b"l\0c\0a.go")
    assert source_digest(tmp_path) == ("sha256:" + expected.hexdigest(), 3)


def test_same_tree_same_digest_from_every_source(tmp_path: Path, settings: Settings) -> None:
    tree = write_module(tmp_path / "tree")
    expected = source_digest(tree)
    assert expected[0].startswith("sha256:") and len(expected[0]) == len("sha256:") + 64
    archives = {"zip": zip_of(tree, tmp_path / "t.zip"), "tgz": tar_of(tree, tmp_path / "t.tgz")}
    sources = [SourceSpec(kind=SourceKind.DIRECTORY, location=str(tree))] + [
        SourceSpec(kind=SourceKind.ARCHIVE, location=str(path)) for path in archives.values()
    ]
    for index, spec in enumerate(sources):
        workspace = intake(spec, tmp_path / f"ws{index}", settings)
        assert (workspace.digest, workspace.file_count) == expected, spec.location


def test_ignores_what_does_not_matter(tmp_path: Path) -> None:
    tree = write_module(tmp_path / "tree")
    before = source_digest(tree)
    os.utime(tree / "main.go", (1, 1))
    (tree / "main.go").chmod(0o600)  # only the owner's execute bit counts
    (tree / "another-empty-dir").mkdir()
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tree / "internal" / ".hg").write_text("x")
    assert source_digest(tree) == before


def _change_byte(tree: Path) -> None:
    (tree / "main.go").write_bytes((tree / "main.go").read_bytes().replace(b"hello", b"hellp"))


def _rename(tree: Path) -> None:
    (tree / "internal" / "util" / "util.go").rename(tree / "internal" / "util" / "util2.go")


def _move_to_other_dir(tree: Path) -> None:
    shutil.move(tree / "internal" / "util" / "util.go", tree / "internal" / "util.go")


def _exec_bit(tree: Path) -> None:
    (tree / "main.go").chmod(0o755)


def _link_target(tree: Path) -> None:
    link = tree / "scripts" / "main.go.link"
    link.unlink()
    link.symlink_to("../go.mod")


def _link_to_file(tree: Path) -> None:
    link = tree / "scripts" / "main.go.link"
    link.unlink()
    link.write_bytes(b"../main.go")  # a file holding the link's text is not the link


def _add_file(tree: Path) -> None:
    (tree / "empty" / "new.go").write_bytes(b"")


CHANGES: dict[str, Callable[[Path], None]] = {
    "changed byte": _change_byte,
    "renamed file": _rename,
    "moved file": _move_to_other_dir,
    "exec bit": _exec_bit,
    "symlink target": _link_target,
    "symlink replaced by a file": _link_to_file,
    "added empty file": _add_file,
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_changes_change_the_digest(change: str, tmp_path: Path) -> None:
    tree = write_module(tmp_path / "tree")
    before = source_digest(tree)
    CHANGES[change](tree)
    assert source_digest(tree)[0] != before[0]
