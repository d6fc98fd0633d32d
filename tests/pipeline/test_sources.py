"""End to end from an archive and from a git repository (with a version stamp from git describe)."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from tests.conftest import EXAMPLES, BuildFn


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(repo),
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@e",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@e",
        },
    )


def test_build_from_a_github_style_tarball(build: BuildFn, tmp_path: Path) -> None:
    archive = tmp_path / "hello-main.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(EXAMPLES / "hello", arcname="hello-main")
    report = build(archive, out=tmp_path / "out")
    assert report.failure is None, report.failure
    assert report.source.kind == "archive"
    assert (tmp_path / "out" / "hello_linux_amd64").is_file()


def test_same_tree_same_digest_from_dir_and_archive(build: BuildFn, tmp_path: Path) -> None:
    archive = tmp_path / "hello.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(EXAMPLES / "hello", arcname=".")
    from_dir = build(EXAMPLES / "hello")
    from_archive = build(archive)
    assert from_dir.source.digest == from_archive.source.digest
    assert from_dir.source.digest is not None


def test_git_url_and_tag_stamp_the_version(build: BuildFn, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-r", str(EXAMPLES / "hello"), str(repo)], check=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "hello")
    _git(repo, "tag", "v2.3.4")
    report = build(f"file://{repo}", ref="v2.3.4", out=tmp_path / "out")
    assert report.failure is None, report.failure
    assert report.source.commit is not None and len(report.source.commit) == 40
    ran = subprocess.run(
        [str(tmp_path / "out" / "hello_linux_amd64")], capture_output=True, text=True, check=True
    )
    assert report.version_stamp == "2.3.4"  # git describe of the tag, without its "v"
    assert f"version {report.version_stamp}" in ran.stdout
