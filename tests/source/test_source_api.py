"""The public surface of gocaas.source, and how the CLI tells sources apart."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

import gocaas.source
from gocaas.cli.app import make_spec
from gocaas.errors import BadInput, ExitCode
from gocaas.settings import Settings
from gocaas.source import detect_kind, intake, local_path
from gocaas.spec import SourceKind, SourceSpec


def test_public_surface_is_pinned() -> None:
    assert sorted(gocaas.source.__all__) == [
        "Workspace",
        "detect_kind",
        "intake",
        "local_path",
        "source_digest",
    ]


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


def test_name_too_long_is_bad_input_naming_it() -> None:
    location = "a" * 300  # longer than a file name may be: is_dir raised OSError
    with pytest.raises(BadInput, match="file name too long") as caught:
        detect_kind(location)
    assert repr(location) in caught.value.message
    assert caught.value.kind == "no_source"


def test_symlink_loop_is_bad_input_naming_it(tmp_path: Path) -> None:
    loop = tmp_path / "sl.zip"
    loop.symlink_to("sl.zip")
    assert detect_kind(str(loop)) is SourceKind.ARCHIVE  # by its name; it is refused when resolved
    with pytest.raises(BadInput, match="symlink loop") as caught:
        local_path(str(loop))
    assert repr(str(loop)) in caught.value.message
    assert local_path(str(tmp_path / "missing.zip")) == str(tmp_path / "missing.zip")


@pytest.mark.parametrize("name", ["a" * 300, "sl.zip"])
def test_cli_refuses_unusable_paths_as_bad_input(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sl.zip").symlink_to("sl.zip")
    with pytest.raises(typer.Exit) as caught:  # not a traceback
        make_spec(name, None, None, False)
    assert caught.value.exit_code == ExitCode.BAD_INPUT


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (SourceSpec(kind=SourceKind.ARCHIVE, location="/x/m.zip", ref="v1"), "not an archive"),
        (SourceSpec(kind=SourceKind.DIRECTORY, location="/x/m", ref="v1"), "not a directory"),
        (SourceSpec(kind=SourceKind.ARCHIVE, location="/x/m.zip", changed_since="main"), "not an archive"),
        (SourceSpec(kind=SourceKind.GIT, location="https://h/r", changed_since="main"), "not a git URL"),
    ],
)
def test_kinds_are_named_with_the_right_article(spec: SourceSpec, expected: str, tmp_path: Path) -> None:
    with pytest.raises(BadInput) as caught:
        intake(spec, tmp_path / "ws", Settings(home=tmp_path / "home"))
    assert caught.value.message.endswith(expected)


def test_cli_ref_for_a_local_archive_reads_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(typer.Exit):
        make_spec("m.zip", "v1", None, False)
    assert "'m.zip' is a local archive" in " ".join(capsys.readouterr().err.split())
