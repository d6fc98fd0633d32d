"""The main job through the CLI: a three-target matrix gives real ELF, Mach-O and PE files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gocaas.report.checksums import read_checksums, sha256_file
from tests.conftest import EXAMPLES, CliFn

MAGIC = {
    "linux": b"\x7fELF",
    "darwin": b"\xcf\xfa\xed\xfe",  # Mach-O 64-bit, little endian
    "windows": b"MZ",
}


@pytest.mark.slow
def test_three_target_matrix(cli: CliFn, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    proc = cli(
        "build",
        str(EXAMPLES / "multi"),
        "--target",
        "linux/amd64",
        "--target",
        "darwin/arm64",
        "--target",
        "windows/amd64",
        "--out",
        str(out),
        "--version",
        "1.2.3",
        "--archive",
        "tar.gz",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "succeeded" and report["exit_code"] == 0
    assert report["source"]["digest"].startswith("sha256:")
    assert [s["name"] for s in report["stages"]] == [
        "source",
        "toolchain",
        "reuse",
        "modules",
        "vet",
        "test",
        "build",
        "package",
    ]

    binaries = {a["name"]: a for a in report["artifacts"] if a["kind"] == "binary"}
    assert set(binaries) == {
        f"{cmd}_{os_}_{arch}{'.exe' if os_ == 'windows' else ''}"
        for cmd in ("greet", "shout")
        for os_, arch in (("linux", "amd64"), ("darwin", "arm64"), ("windows", "amd64"))
    }
    sums = read_checksums(out / "sha256sums.txt")
    assert set(sums) == {a["name"] for a in report["artifacts"]}
    for name, artifact in binaries.items():
        path = out / name
        assert path.read_bytes()[:4].startswith(MAGIC[artifact["goos"]]), name
        assert sha256_file(path) == sums[name] == artifact["sha256"]
        assert path.stat().st_size == artifact["size"]
    archives = [a for a in report["artifacts"] if a["kind"] == "archive"]
    assert sorted(a["name"] for a in archives) == [
        "multi_1.2.3_darwin_arm64.tar.gz",
        "multi_1.2.3_linux_amd64.tar.gz",
        "multi_1.2.3_windows_amd64.tar.gz",
    ]
    # GoReleaser's format is sha256sum's: the tool itself verifies it.
    check = subprocess.run(
        ["sha256sum", "-c", "sha256sums.txt"], cwd=out, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr

    ran = subprocess.run(
        [str(out / "greet_linux_amd64"), "gopher"], capture_output=True, text=True, check=True
    )
    assert ran.stdout.strip() == "hello, gopher (1.2.3)"


def test_default_target_is_the_host_and_plain_output(cli: CliFn, tmp_path: Path) -> None:
    proc = cli("build", str(EXAMPLES / "hello"), "--out", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    assert "==> build" in proc.stdout  # not a TTY: plain lines, no live view
    assert (tmp_path / "d" / "hello_linux_amd64").is_file()
    ran = subprocess.run(
        [str(tmp_path / "d" / "hello_linux_amd64")], capture_output=True, text=True, check=True
    )
    assert "hello from gocaas" in ran.stdout
