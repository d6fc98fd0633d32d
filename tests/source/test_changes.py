"""changed_files against real repositories: every kind of change found, nothing written to the user's
repository (not even the index's stat cache), bad refs and non-repositories refused, modules in subdirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from gocaas.errors import BadInput
from gocaas.settings import Settings
from gocaas.source.changes import changed_files
from gocaas.spec import SourceKind, SourceSpec
from tests.source.builders import GO_MOD, MAIN_GO, git, snapshot


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    return root


BASE = {
    "go.mod": GO_MOD.decode(),
    "main.go": MAIN_GO.decode(),
    "util/util.go": "package util\n",
    "util/old.go": "package util\n\nconst Old = 1\n",
    "same.go": "package main\n",
    ".gitignore": "*.log\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", BASE)
    (repo / "committed.go").write_text("package main\n")
    git(repo, "add", "committed.go")
    git(repo, "commit", "-q", "-m", "second")
    return repo


def make_every_kind_of_change(repo: Path) -> None:
    (repo / "staged.go").write_text("package main\n")
    git(repo, "add", "staged.go")
    (repo / "main.go").write_text(MAIN_GO.decode() + "\n// unstaged\n")
    (repo / "util" / "old.go").unlink()
    (repo / "util" / "new.go").write_text("package util\n")  # untracked
    (repo / "debug.log").write_text("ignored\n")
    # Same bytes, new mtime: the index's stat cache is stale, which tempts git to rewrite the index.
    os.utime(repo / "same.go", ns=(1_000_000_000, 1_000_000_000))


def test_finds_committed_staged_unstaged_deleted_and_untracked(repo: Path, settings: Settings) -> None:
    make_every_kind_of_change(repo)
    expected = ["main.go", "staged.go", "util/new.go", "util/old.go"]
    assert changed_files(repo, "HEAD", repo, settings) == expected
    assert changed_files(repo, "HEAD~1", repo, settings) == sorted(["committed.go", *expected])


def test_writes_nothing_to_the_repository(repo: Path, settings: Settings) -> None:
    make_every_kind_of_change(repo)
    before = snapshot(repo)
    assert ".git/index" in before
    changed_files(repo, "HEAD~1", repo, settings)
    assert snapshot(repo) == before  # .git included: index bytes and mtime, no lock or cache files
    # The control: plain `git status` does rewrite this index, so the snapshot would have caught us.
    git(repo, "status", "--porcelain")
    assert snapshot(repo)[".git/index"] != before[".git/index"]


def test_unknown_ref_is_bad_input_naming_it(repo: Path, settings: Settings) -> None:
    with pytest.raises(BadInput, match="'no-such-branch'") as caught:
        changed_files(repo, "no-such-branch", repo, settings)
    assert caught.value.kind == "bad_ref"


@pytest.mark.parametrize("ref", ["--output=/tmp/x", "-p", "", "main branch", "HEAD\n"])
def test_refs_that_could_be_options_are_refused(ref: str, repo: Path, settings: Settings) -> None:
    with pytest.raises(BadInput, match="not a git ref") as caught:
        changed_files(repo, ref, repo, settings)
    assert caught.value.kind == "bad_ref"


def test_not_a_repository(tmp_path: Path, settings: Settings) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "go.mod").write_bytes(GO_MOD)
    with pytest.raises(BadInput, match="--changed-since needs a git checkout") as caught:
        changed_files(plain, "HEAD", plain, settings)
    assert caught.value.kind == "not_a_repo"
    with pytest.raises(BadInput, match="needs a git checkout"):
        changed_files(tmp_path / "missing", "HEAD", tmp_path / "missing", settings)


def test_module_in_a_subdirectory(tmp_path: Path, settings: Settings) -> None:
    repo = make_repo(
        tmp_path / "mono",
        {
            "README.md": "top\n",
            "svc/go.mod": GO_MOD.decode(),
            "svc/main.go": MAIN_GO.decode(),
            "web/app.js": "",
        },
    )
    module = repo / "svc"
    (repo / "README.md").write_text("changed\n")
    (repo / "web" / "app.js").write_text("changed\n")
    (module / "main.go").write_text(MAIN_GO.decode() + "// changed\n")
    (module / "pkg").mkdir()
    (module / "pkg" / "p.go").write_text("package pkg\n")
    assert changed_files(repo, "HEAD", module, settings) == ["main.go", "pkg/p.go"]
    assert changed_files(module, "HEAD", module, settings) == ["main.go", "pkg/p.go"]  # asked from inside
    with pytest.raises(BadInput, match="outside the work tree"):
        changed_files(repo, "HEAD", tmp_path, settings)


def test_file_names_that_look_like_pathspecs_or_need_quoting(repo: Path, settings: Settings) -> None:
    for name in ("*.go", ":(glob)x.go", "sp ace.go", "ünï.go", "-dash.go"):
        (repo / name).write_text("package main\n")
    assert changed_files(repo, "HEAD", repo, settings) == sorted(
        ["*.go", ":(glob)x.go", "sp ace.go", "ünï.go", "-dash.go"]
    )


@pytest.mark.parametrize("revision", ["HEAD~1", "main^", "main^2~3", "v1.2.0"])
def test_changed_since_takes_a_revision_not_only_a_ref(revision: str) -> None:
    # HEAD~1 is what a CI job asks for most; the spec used to refuse it as "not a usable git ref"
    spec = SourceSpec(kind=SourceKind.DIRECTORY, location="/m", changed_since=revision)
    assert spec.changed_since == revision


@pytest.mark.parametrize("revision", ["-p", "a..b", "HEAD~1\n", "HEAD@{1}", "main branch"])
def test_changed_since_refuses_what_is_not_a_revision(revision: str) -> None:
    with pytest.raises(ValidationError, match="not a usable git revision"):
        SourceSpec(kind=SourceKind.DIRECTORY, location="/m", changed_since=revision)
