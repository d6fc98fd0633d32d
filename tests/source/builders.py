"""Builders for source-intake tests: module trees, archives of them (hostile ones too), git repositories,
and snapshots to prove what was and wasn't written."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import gocaas

GO_MOD = b"module example.test/hello\n\ngo 1.22\n"
MAIN_GO = b'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n'


def write_module(root: Path) -> Path:
    """A small module with a subpackage, an executable script, an inside symlink and an empty directory."""
    (root / "internal" / "util").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "empty").mkdir()
    (root / "go.mod").write_bytes(GO_MOD)
    (root / "main.go").write_bytes(MAIN_GO)
    (root / "internal" / "util" / "util.go").write_bytes(b"package util\n\nconst Answer = 42\n")
    script = root / "scripts" / "run.sh"
    script.write_bytes(b"#!/bin/sh\necho run\n")
    script.chmod(0o755)
    (root / "scripts" / "main.go.link").symlink_to("../main.go")
    return root


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything observable about a tree that a write would change: types, modes, times, bytes, targets."""
    result: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(dirpath, name)
            info = path.lstat()
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(info.st_mode):
                result[rel] = ("link", str(path.readlink()))
            elif stat.S_ISDIR(info.st_mode):
                result[rel] = ("dir", info.st_mode, info.st_mtime_ns)
            else:
                result[rel] = ("file", info.st_mode, info.st_mtime_ns, path.read_bytes())
    return result


# --- archives ------------------------------------------------------------------------------------------


def tar_file(name: str, data: bytes = b"x\n", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def tar_dir(name: str) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def tar_link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def tar_special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info, None


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], **pax: str) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers=pax or None) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def zip_file(
    name: str, data: bytes = b"x\n", mode: int = stat.S_IFREG | 0o644
) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info, data


def zip_link(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    return zip_file(name, target.encode(), stat.S_IFLNK | 0o777)


def make_zip(path: Path, entries: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return path


def _tree_entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def tar_of(root: Path, path: Path, prefix: str = "") -> Path:
    """A tar.gz of a tree (symlinks and modes kept), optionally under one top directory."""
    with tarfile.open(path, "w:gz") as archive:
        if prefix:
            archive.add(root, arcname=prefix, recursive=False)
        for entry in _tree_entries(root):
            archive.add(entry, arcname=prefix + entry.relative_to(root).as_posix(), recursive=False)
    return path


def zip_of(root: Path, path: Path) -> Path:
    """A zip of a tree the way Info-ZIP makes one: unix modes in external_attr, symlinks as link entries."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in _tree_entries(root):
            rel = entry.relative_to(root).as_posix()
            if entry.is_symlink():
                info, data = zip_link(rel, str(entry.readlink()))
                archive.writestr(info, data)
            else:
                archive.write(entry, rel)
    return path


# --- git -----------------------------------------------------------------------------------------------


def git_env(home: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.test",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.test",
        "LANG": "C",
    }


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=repo,
        env=git_env(repo.parent),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


# --- permissions -----------------------------------------------------------------------------------------

# Runs one intake of a directory and prints what it refused with; see run_unprivileged.
_INTAKE_SCRIPT = """
import sys
from pathlib import Path
from gocaas.errors import BadInput
from gocaas.settings import Settings
from gocaas.source import intake
from gocaas.source.fastsync import fast_sync
from gocaas.spec import SourceKind, SourceSpec

how, source, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
settings = Settings(home=work / "home")
try:
    if how == "fast":
        result = fast_sync(source, work / "src", work / "manifest.json", settings)
        print("fast path not taken" if result is None else f"no error, {result[0].file_count} files")
    else:
        taken = intake(SourceSpec(kind=SourceKind.DIRECTORY, location=str(source)), work / "src", settings)
        print(f"no error, {taken.file_count} files")
except BadInput as exc:
    print(f"BadInput: {exc.message}")
"""


def run_unprivileged(how: str, source: Path, work: Path) -> str:
    """Take the directory `source` in (how: "fast" for the fast sync, "full" for the full intake) in a
    process for which file permissions hold, and return what it said: tests run as root, which reads
    anything, so as root the process runs without the capabilities that bypass permissions."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions can't be made to hold")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]
        if subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode != 0:
            pytest.skip("setpriv cannot drop capabilities here")
    src_dir = str(Path(gocaas.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src_dir, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _INTAKE_SCRIPT, how, str(source), str(work)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
