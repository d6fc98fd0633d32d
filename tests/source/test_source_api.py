"""The public surface of gocaas.source, and how the CLI tells sources apart."""

from __future__ import annotations

from pathlib import Path

import pytest

import gocaas.source
from gocaas.errors import BadInput
from gocaas.source import detect_kind
from gocaas.spec import SourceKind


def test_public_surface_is_pinned() -> None:
    assert sorted(gocaas.source.__all__) == ["Workspace", "detect_kind", "intake", "source_digest"]


def test_existing_directory(tmp_path: Path) -> None:
    assert detect_kind(str(tmp_path)) is SourceKind.DIRECTORY
    # Even one whose name looks like an archive.
    (tmp_path / "odd.zip").mkdir()
    assert detect_kind(str(tmp_path / "odd.zip")) is SourceKind.DIRECTORY


@pytest.mark.parametrize("location", ["src.zip", "dir/src.tar.gz", "/abs/src.tgz", "SRC.TGZ", "missing.zip"])
def test_archive_names(location: str) -> None:
    assert detect_kind(location) is SourceKind.ARCHIVE


@pytest.mark.parametrize(
    "location",
    [
        "https://github.com/owner/repo.git",
        "ssh://git@github.com/owner/repo",
        "git://example.com/repo",
        "file:///srv/repo",
        "git@github.com:owner/repo.git",
        "https://example.com/release.zip",  # an archive is a local file: a URL is a repository
    ],
)
def test_git_urls(location: str) -> None:
    assert detect_kind(location) is SourceKind.GIT


@pytest.mark.parametrize("location", ["no/such/dir", "main.go", "source.rar", "host:path"])
def test_unknown_is_bad_input_naming_it(location: str) -> None:
    with pytest.raises(BadInput) as caught:
        detect_kind(location)
    assert repr(location) in caught.value.message
