"""Archive intake: good archives extract, every hostile one is refused naming its entry, and nothing is ever
written outside the build's directory."""

from __future__ import annotations

import gzip
import os
import re
import stat
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gocaas.errors import BadInput
from gocaas.go.gomod import module_path
from gocaas.settings import Settings
from gocaas.source import intake
from gocaas.spec import SourceKind, SourceSpec
from tests.source.builders import (
    GO_MOD,
    make_tar,
    make_zip,
    tar_dir,
    tar_file,
    tar_link,
    tar_of,
    tar_special,
    write_module,
    zip_file,
    zip_link,
    zip_of,
)

TarMembers = list[tuple[tarfile.TarInfo, bytes | None]]


def archive_spec(path: Path) -> SourceSpec:
    return SourceSpec(kind=SourceKind.ARCHIVE, location=str(path))


def assert_contained(tmp_path: Path) -> None:
    """Nothing but the inputs and the build's directory exists: no escape wrote anything."""
    assert {path.name for path in tmp_path.iterdir()} <= {"in", "box"}
    assert [path.name for path in (tmp_path / "box").iterdir()] == ["ws"]


def refuse(path: Path, dest: Path, settings: Settings, entry: str) -> BadInput:
    with pytest.raises(BadInput) as caught:
        intake(archive_spec(path), dest, settings)
    assert f"archive entry {entry!r}" in caught.value.message
    return caught.value


# --- tar attacks -------------------------------------------------------------------------------------

TAR_ATTACKS: dict[str, tuple[Callable[[Path], TarMembers], str, str]] = {
    "absolute path": (
        lambda tmp: [tar_file("go.mod", GO_MOD), tar_file(str(tmp / "evil"))],
        "{tmp}/evil",
        "absolute path",
    ),
    "dotdot": (
        lambda tmp: [tar_file("go.mod", GO_MOD), tar_file("../evil")],
        "../evil",
        "escapes the destination",
    ),
    "deep dotdot": (lambda tmp: [tar_file("a/b/../../../../evil")], "a/b/../../../../evil", "escapes"),
    "symlink outside": (
        lambda tmp: [tar_link("link", "../.."), tar_file("link/evil")],
        "link",
        "symlink points outside",
    ),
    "absolute symlink": (lambda tmp: [tar_link("link", str(tmp))], "link", "symlink to an absolute path"),
    "hardlink outside": (
        lambda tmp: [tar_link("hard", "../outside", tarfile.LNKTYPE)],
        "hard",
        "hard link points outside",
    ),
    "absolute hardlink": (
        lambda tmp: [tar_link("hard", "/etc/passwd", tarfile.LNKTYPE)],
        "hard",
        "hard link to an absolute path",
    ),
    # tarfile itself fails on these with a KeyError once extracting (a 500 from the API before)
    "hardlink to a missing file": (
        lambda tmp: [tar_file("go.mod", GO_MOD), tar_link("h", "nothere", tarfile.LNKTYPE)],
        "h",
        "not a file before it",
    ),
    "hardlink to itself": (lambda tmp: [tar_link("h", "h", tarfile.LNKTYPE)], "h", "not a file before it"),
    # os.makedirs and pathlib recurse per level: 2,000 levels ran past Python's recursion limit
    "nested too deep": (lambda tmp: [tar_file("d/" * 2000 + "f")], ("d/" * 100)[:200] + "…", "levels deep"),
    "char device": (lambda tmp: [tar_special("dev", tarfile.CHRTYPE)], "dev", "devices, fifos"),
    "block device": (lambda tmp: [tar_special("blk", tarfile.BLKTYPE)], "blk", "devices, fifos"),
    "fifo": (lambda tmp: [tar_special("fifo", tarfile.FIFOTYPE)], "fifo", "devices, fifos"),
    "write through an inside symlink": (
        lambda tmp: [tar_dir("sub"), tar_link("alias", "sub"), tar_file("alias/evil")],
        "alias/evil",
        "goes through the symlink 'alias'",
    ),
    # Each link is inside on its own; followed together, `l` is the parent of the destination.
    "chained symlinks": (
        lambda tmp: [
            tar_dir("p"),
            tar_link("p/q", ".."),
            tar_link("l", "p/q/.."),
            tar_file("go.mod", GO_MOD),
        ],
        "l",
        "outside",
    ),
}


@pytest.mark.parametrize("attack", TAR_ATTACKS, ids=list(TAR_ATTACKS))
@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz"])
def test_tar_attack_refused(
    attack: str, suffix: str, tmp_path: Path, inputs: Path, dest: Path, settings: Settings
) -> None:
    build, entry, reason = TAR_ATTACKS[attack]
    path = make_tar(inputs / f"attack{suffix}", build(tmp_path))
    error = refuse(path, dest, settings, entry.format(tmp=tmp_path))
    assert reason in error.message
    assert_contained(tmp_path)


# --- zip attacks -------------------------------------------------------------------------------------

ZipEntries = list[tuple[zipfile.ZipInfo, bytes]]

ZIP_ATTACKS: dict[str, tuple[Callable[[Path], ZipEntries], str, str]] = {
    "absolute path": (lambda tmp: [zip_file(str(tmp / "evil"))], "{tmp}/evil", "absolute path"),
    "dotdot": (
        lambda tmp: [zip_file("go.mod", GO_MOD), zip_file("../evil")],
        "../evil",
        "escapes the destination",
    ),
    "symlink outside": (
        lambda tmp: [zip_link("link", "../.."), zip_file("link/evil")],
        "link",
        "symlink points outside",
    ),
    "absolute symlink": (lambda tmp: [zip_link("link", str(tmp))], "link", "symlink to an absolute path"),
    "nested too deep": (lambda tmp: [zip_file("d/" * 2000 + "f")], ("d/" * 100)[:200] + "…", "levels deep"),
    "device": (lambda tmp: [zip_file("dev", b"", stat.S_IFCHR | 0o644)], "dev", "devices, fifos"),
    "fifo": (lambda tmp: [zip_file("fifo", b"", stat.S_IFIFO | 0o644)], "fifo", "devices, fifos"),
    "write through an inside symlink": (
        lambda tmp: [zip_link("alias", "."), zip_file("alias/evil")],
        "alias/evil",
        "goes through the symlink 'alias'",
    ),
    "chained symlinks": (
        lambda tmp: [zip_link("p/q", ".."), zip_link("l", "p/q/.."), zip_file("go.mod", GO_MOD)],
        "l",
        "outside",
    ),
}


@pytest.mark.parametrize("attack", ZIP_ATTACKS, ids=list(ZIP_ATTACKS))
def test_zip_attack_refused(
    attack: str, tmp_path: Path, inputs: Path, dest: Path, settings: Settings
) -> None:
    build, entry, reason = ZIP_ATTACKS[attack]
    path = make_zip(inputs / "attack.zip", build(tmp_path))
    error = refuse(path, dest, settings, entry.format(tmp=tmp_path))
    assert reason in error.message
    assert_contained(tmp_path)


def test_zip_duplicate_entry_refused(tmp_path: Path, inputs: Path, dest: Path, settings: Settings) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we make on purpose
        path = make_zip(
            inputs / "dup.zip", [zip_file("go.mod", GO_MOD), zip_file("go.mod", b"module evil\n")]
        )
    with pytest.raises(BadInput, match="conflict"):
        intake(archive_spec(path), dest, settings)
    assert_contained(tmp_path)


# --- limits ------------------------------------------------------------------------------------------


def _limited(tmp_path: Path, **limits: float) -> Settings:
    return Settings(home=tmp_path / "home", **limits)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_too_many_files(kind: str, tmp_path: Path, inputs: Path, dest: Path) -> None:
    names = ["go.mod", "a.go", "b.go", "c.go", "d.go"]
    if kind == "zip":
        path = make_zip(inputs / "many.zip", [zip_file(name) for name in names])
    else:
        path = make_tar(inputs / "many.tar.gz", [tar_file(name) for name in names])
    error = refuse(path, dest, _limited(tmp_path, max_archive_files=3), "c.go")
    assert "more than 3 entries" in error.message
    assert not any(dest.iterdir())  # refused before anything was extracted
    assert_contained(tmp_path)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_too_large_total(kind: str, tmp_path: Path, inputs: Path, dest: Path) -> None:
    # Random bytes don't compress, so only the size limit can trip.
    files = {"go.mod": GO_MOD, "big1.bin": os.urandom(600), "big2.bin": os.urandom(600)}
    if kind == "zip":
        path = make_zip(inputs / "big.zip", [zip_file(name, data) for name, data in files.items()])
    else:
        path = make_tar(inputs / "big.tar.gz", [tar_file(name, data) for name, data in files.items()])
    error = refuse(path, dest, _limited(tmp_path, max_archive_bytes=1000), "big2.bin")
    assert "total uncompressed size over 1000 bytes" in error.message
    assert not any(dest.iterdir())
    assert_contained(tmp_path)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_compression_ratio_bomb(kind: str, tmp_path: Path, inputs: Path, dest: Path) -> None:
    zeros = bytes(4 * 1024 * 1024)
    if kind == "zip":
        path = make_zip(inputs / "bomb.zip", [zip_file("go.mod", GO_MOD), zip_file("zeros", zeros)])
    else:
        path = make_tar(inputs / "bomb.tar.gz", [tar_file("go.mod", GO_MOD), tar_file("zeros", zeros)])
    assert path.stat().st_size * 100 < len(zeros)
    error = refuse(path, dest, _limited(tmp_path, max_compression_ratio=100), "zeros")
    assert "compression ratio over 100" in error.message
    assert not any(dest.iterdir())
    assert_contained(tmp_path)


def test_tar_bomb_in_headers_refused(tmp_path: Path, inputs: Path, dest: Path) -> None:
    """A pax header is read into memory before any member is seen: the stream cap catches a huge one."""
    path = make_tar(inputs / "pax.tar.gz", [tar_file("go.mod", GO_MOD)], comment="z" * (4 * 1024 * 1024))
    with pytest.raises(BadInput, match="decompresses to more than"):
        intake(archive_spec(path), dest, _limited(tmp_path, max_compression_ratio=50))
    assert_contained(tmp_path)


# --- corrupt input -----------------------------------------------------------------------------------


def _truncated_tar(inputs: Path) -> Path:
    good = make_tar(
        inputs / "good.tar.gz", [tar_file("go.mod", GO_MOD), tar_file("x.bin", os.urandom(50_000))]
    )
    path = inputs / "truncated.tar.gz"
    path.write_bytes(good.read_bytes()[:20_000])
    return path


CORRUPT: dict[str, Callable[[Path], Path]] = {
    "garbage zip": lambda inputs: _write(inputs / "garbage.zip", b"this is not a zip file at all"),
    "garbage tar.gz": lambda inputs: _write(inputs / "garbage.tar.gz", b"this is not gzip"),
    "gzip of non-tar": lambda inputs: _write(
        inputs / "plain.tgz", gzip.compress(b"hello, not a tar\n" * 100)
    ),
    "tar.gz that is a zip": lambda inputs: make_zip(inputs / "zip.tar.gz", [zip_file("go.mod", GO_MOD)]),
    "truncated tar.gz": _truncated_tar,
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", CORRUPT, ids=list(CORRUPT))
def test_corrupt_archive_is_bad_input(
    case: str, tmp_path: Path, inputs: Path, dest: Path, settings: Settings
) -> None:
    path = CORRUPT[case](inputs)
    with pytest.raises(BadInput) as caught:
        intake(archive_spec(path), dest, settings)
    assert path.name in caught.value.message
    assert_contained(tmp_path)


def test_missing_archive(inputs: Path, dest: Path, settings: Settings) -> None:
    with pytest.raises(BadInput, match="no such archive"):
        intake(archive_spec(inputs / "nope.zip"), dest, settings)


def test_unknown_suffix(inputs: Path, dest: Path, settings: Settings) -> None:
    path = _write(inputs / "source.rar", b"rar")
    with pytest.raises(BadInput, match=r"not a \.zip, \.tar\.gz or \.tgz"):
        intake(archive_spec(path), dest, settings)


# --- good archives -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mod.zip", "mod.tar.gz", "mod.tgz", "MOD.ZIP"])
def test_good_archive_extracts(
    name: str, tmp_path: Path, inputs: Path, dest: Path, settings: Settings
) -> None:
    tree = write_module(tmp_path / "tree")
    maker = zip_of if name.lower().endswith(".zip") else tar_of
    path = maker(tree, inputs / name)
    workspace = intake(archive_spec(path), dest, settings)
    assert workspace.root == dest
    assert (dest / "go.mod").read_bytes() == GO_MOD
    assert (dest / "internal" / "util" / "util.go").is_file()
    assert os.access(dest / "scripts" / "run.sh", os.X_OK)
    assert not os.access(dest / "main.go", os.X_OK)
    assert (dest / "scripts" / "main.go.link").readlink() == Path("../main.go")
    assert workspace.file_count == 5
    assert workspace.describe is None and workspace.commit is None


def test_single_top_directory_tarball(tmp_path: Path, inputs: Path, dest: Path, settings: Settings) -> None:
    """GitHub's tarballs: a pax comment with the commit, and everything under owner-repo-sha/."""
    tree = write_module(tmp_path / "tree")
    path = tar_of(tree, inputs / "hello-0123abc.tar.gz", prefix="owner-hello-0123abc/")
    workspace = intake(archive_spec(path), dest, settings)
    assert workspace.root == dest / "owner-hello-0123abc"
    assert (workspace.root / "go.mod").read_bytes() == GO_MOD


def test_single_top_directory_zip_ignores_macosx(inputs: Path, dest: Path, settings: Settings) -> None:
    path = make_zip(
        inputs / "mac.zip",
        [zip_file("hello/go.mod", GO_MOD), zip_file("hello/main.go"), zip_file("__MACOSX/hello/._main.go")],
    )
    workspace = intake(archive_spec(path), dest, settings)
    assert workspace.root == dest / "hello"


@pytest.mark.parametrize(
    "members",
    [
        [tar_file("main.go")],
        [tar_file("a/go.mod", GO_MOD), tar_file("b/main.go")],  # two top directories: ambiguous
        [tar_file("a/b/go.mod", GO_MOD)],  # go.mod two levels down
    ],
    ids=["no go.mod", "two top dirs", "too deep"],
)
def test_no_go_mod(members: TarMembers, inputs: Path, dest: Path, settings: Settings) -> None:
    path = make_tar(inputs / "nomod.tar.gz", members)
    with pytest.raises(BadInput, match=r"no go\.mod at the top of nomod\.tar\.gz"):
        intake(archive_spec(path), dest, settings)


def test_inside_links_and_hardlinks_are_kept(inputs: Path, dest: Path, settings: Settings) -> None:
    path = make_tar(
        inputs / "links.tar.gz",
        [
            tar_file("go.mod", GO_MOD),
            tar_dir("pkg"),
            tar_file("pkg/a.go", b"package pkg\n"),
            tar_link("pkg/b.go", "a.go"),
            tar_link("c.go", "pkg/a.go", tarfile.LNKTYPE),
        ],
    )
    intake(archive_spec(path), dest, settings)
    assert (dest / "pkg" / "b.go").readlink() == Path("a.go")
    assert (dest / "c.go").read_bytes() == b"package pkg\n"


def test_dest_is_created_and_must_be_empty(tmp_path: Path, inputs: Path, settings: Settings) -> None:
    from gocaas.errors import InfraError

    path = make_tar(inputs / "m.tar.gz", [tar_file("go.mod", GO_MOD)])
    fresh = tmp_path / "deep" / "er" / "ws"
    assert intake(archive_spec(path), fresh, settings).root == fresh
    with pytest.raises(InfraError, match="not empty"):
        intake(archive_spec(path), fresh, settings)


def test_go_mod_that_is_not_utf8_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_bytes(b"module example.com/caf\xe9\n\ngo 1.21\n")
    with pytest.raises(BadInput, match=r"go\.mod is not UTF-8"):
        module_path(tmp_path)


def test_conflicting_entries_are_named_without_the_servers_paths(
    tmp_path: Path, inputs: Path, dest: Path, settings: Settings
) -> None:
    path = make_tar(inputs / "conflict.tar.gz", [tar_file("go.mod", GO_MOD), tar_file("a"), tar_file("a/b")])
    with pytest.raises(BadInput, match="entries conflict at 'a/b'") as caught:
        intake(archive_spec(path), dest, settings)
    assert str(tmp_path) not in caught.value.message


def test_tar_duplicate_entry_refused(tmp_path: Path, inputs: Path, dest: Path, settings: Settings) -> None:
    """As with zip: a later entry must not silently replace an earlier one of the same name."""
    path = make_tar(
        inputs / "dup.tar.gz",
        [tar_file("go.mod", GO_MOD), tar_file("main.go"), tar_file("./go.mod", b"module evil\n")],
    )
    with pytest.raises(BadInput, match=r"dup\.tar\.gz: entries conflict at 'go\.mod'") as caught:
        intake(archive_spec(path), dest, settings)
    assert caught.value.kind == "bad_archive"
    assert_contained(tmp_path)


def test_tar_directory_named_twice_is_fine(inputs: Path, dest: Path, settings: Settings) -> None:
    path = make_tar(
        inputs / "dirs.tar.gz",
        [tar_dir("pkg"), tar_file("go.mod", GO_MOD), tar_dir("pkg/"), tar_file("pkg/a.go")],
    )
    intake(archive_spec(path), dest, settings)
    assert (dest / "pkg" / "a.go").is_file()


@pytest.mark.parametrize("mtime", ["1e20", "-1e20", "nan", "inf"])
def test_tar_mtime_out_of_range_refused(
    mtime: str, tmp_path: Path, inputs: Path, dest: Path, settings: Settings
) -> None:
    info, data = tar_file("go.mod", GO_MOD)
    info.pax_headers = {"mtime": mtime}
    path = make_tar(inputs / "time.tar.gz", [(info, data)])
    error = refuse(path, dest, settings, "go.mod")
    assert "modification time out of range" in error.message
    assert error.kind == "bad_archive"
    assert_contained(tmp_path)


def test_tar_old_and_far_future_mtimes_still_extract(inputs: Path, dest: Path, settings: Settings) -> None:
    old, future = tar_file("go.mod", GO_MOD), tar_file("main.go")
    old[0].pax_headers = {"mtime": "-86400.5"}
    future[0].pax_headers = {"mtime": "32503680000"}  # the year 3000
    intake(archive_spec(make_tar(inputs / "times.tar.gz", [old, future])), dest, settings)
    assert (dest / "main.go").is_file()


@pytest.mark.parametrize("name", ["x.tgz", "x.zip"])
def test_fifo_named_like_an_archive_is_refused_unread(
    name: str, inputs: Path, dest: Path, settings: Settings
) -> None:
    fifo = inputs / name
    os.mkfifo(fifo)  # opening it would block: the test would hang
    with pytest.raises(BadInput, match=re.escape(f"archive {fifo}: not a regular file")) as caught:
        intake(archive_spec(fifo), dest, settings)
    assert caught.value.kind == "no_source"


def test_link_to_a_device_is_refused_unread(inputs: Path, dest: Path, settings: Settings) -> None:
    (inputs / "z.zip").symlink_to("/dev/zero")  # reading it never ends
    with pytest.raises(BadInput, match=re.escape(f"archive {inputs}/z.zip: not a regular file")):
        intake(archive_spec(inputs / "z.zip"), dest, settings)
    # Resolved first, as the CLI does.
    with pytest.raises(BadInput, match="archive /dev/zero: not a regular file"):
        intake(archive_spec(Path("/dev/zero")), dest, settings)
