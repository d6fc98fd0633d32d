"""Packing a directory for upload: what git would commit, links kept inside, the same bytes every time."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from gocaas.client import pack_directory
from gocaas.errors import BadInput
from tests.conftest import EXAMPLES, CliFn

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.test", "-c", "init.defaultBranch=main"]


def git(repo: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True)


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def module(root: Path) -> Path:
    (root / "cmd").mkdir(parents=True)
    (root / "go.mod").write_text("module example.test/packed\n\ngo 1.22\n")
    (root / "main.go").write_text("package main\n\nfunc main() {}\n")
    (root / "cmd" / "tool.go").write_text("package cmd\n")
    return root


def test_a_git_work_tree_packs_tracked_and_unignored_files_only(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the module\n")
    repo = module(tmp_path / "repo")
    (repo / ".gitignore").write_text("secret.env\nbin/\n*.log\n")
    (repo / "gone.go").write_text("package main\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "init")
    (repo / "gone.go").unlink()  # tracked, deleted in the work tree
    (repo / "secret.env").write_text("TOKEN=hunter2\n")  # ignored
    (repo / "bin").mkdir()
    (repo / "bin" / "packed").write_bytes(b"\x7fELF")  # an ignored directory
    (repo / "debug.log").write_text("noise\n")  # ignored by pattern
    (repo / "new.go").write_text("package main\n")  # untracked, not ignored
    (repo / "main.link").symlink_to("main.go")  # inside
    (repo / "escape").symlink_to(outside)  # outside: left out, never followed
    script = repo / "gen.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)

    packed = pack_directory(repo, tmp_path / "out.tar.gz")

    entries = members(packed.path)
    assert set(entries) == {
        ".gitignore",
        "go.mod",
        "main.go",
        "cmd/tool.go",
        "new.go",
        "gen.sh",
        "main.link",
    }
    assert packed.from_git and packed.files == len(entries)
    assert entries["main.link"].issym() and entries["main.link"].linkname == "main.go"
    assert entries["gen.sh"].mode == 0o755 and entries["main.go"].mode == 0o644
    assert any("escape" in reason and "outside" in reason for reason in packed.skipped)
    assert packed.size == packed.path.stat().st_size > 0
    assert "7 files" in packed.describe() and "git" in packed.describe()


def test_a_module_in_a_subdirectory_of_a_repository_packs_only_that_directory(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README").write_text("top\n")
    sub = module(repo / "services" / "api")
    (repo / ".gitignore").write_text("*.tmp\n")
    (sub / "scratch.tmp").write_text("x\n")
    git(repo, "init", "-q")

    entries = members(pack_directory(sub, tmp_path / "out.tar.gz").path)

    assert set(entries) == {"go.mod", "main.go", "cmd/tool.go"}


def test_outside_git_everything_but_dot_git_is_packed_and_links_stay_inside(tmp_path: Path) -> None:
    root = module(tmp_path / "plain")
    (root / "notes.log").write_text("kept: no git, no .gitignore rules\n")
    (root / "cmd" / "up").symlink_to("..")  # a link to a directory inside: kept as a link, not walked
    (root / "abs").symlink_to(root / "main.go")  # absolute but inside: stored relative
    (root / "out").symlink_to("/etc")

    packed = pack_directory(root, tmp_path / "out.tar.gz")

    entries = members(packed.path)
    assert set(entries) == {"go.mod", "main.go", "cmd/tool.go", "notes.log", "cmd/up", "abs"}
    assert not packed.from_git
    assert entries["cmd/up"].issym() and entries["cmd/up"].linkname == ".."
    assert entries["abs"].linkname == "main.go"
    assert [r for r in packed.skipped if r.startswith("out:")]


def test_the_same_source_packs_to_the_same_bytes(tmp_path: Path) -> None:
    root = module(tmp_path / "m")
    first = pack_directory(root, tmp_path / "a.tar.gz").path.read_bytes()
    (root / "main.go").touch()  # a new mtime changes nothing
    assert pack_directory(root, tmp_path / "b.tar.gz").path.read_bytes() == first
    (root / "main.go").write_text("package main\n\nfunc main() { println() }\n")
    assert pack_directory(root, tmp_path / "c.tar.gz").path.read_bytes() != first


def test_a_directory_without_go_mod_is_refused(tmp_path: Path, cli: CliFn) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.go").write_text("package main\n")
    with pytest.raises(BadInput, match=r"no go\.mod"):
        pack_directory(tmp_path / "src", tmp_path / "out.tar.gz")

    # Refused before anything is sent: no server needs to exist.
    done = cli("submit", str(tmp_path / "src"), "--server", "http://127.0.0.1:9", "--token", "t")
    assert done.returncode == 2, done.stderr
    assert "no go.mod" in done.stderr


def test_an_ignored_go_mod_is_refused(tmp_path: Path) -> None:
    repo = module(tmp_path / "repo")
    (repo / ".gitignore").write_text("go.mod\n")
    git(repo, "init", "-q")
    with pytest.raises(BadInput, match="ignored by git"):
        pack_directory(repo, tmp_path / "out.tar.gz")


def test_the_example_module_packs(tmp_path: Path) -> None:
    # examples/ lives inside this project's git work tree: git chooses, go.mod and main.go go.
    entries = members(pack_directory(EXAMPLES / "hello", tmp_path / "out.tar.gz").path)
    assert {"go.mod", "main.go"} <= set(entries)
