"""`gocaas quarantine add|remove|list` (the module's .gocaas/quarantine) and `gocaas flaky` (the history)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gocaas.cli.common import fail, load
from gocaas.errors import GocaasError

quarantine_app = typer.Typer(
    no_args_is_help=True, help="Known flaky tests that may fail without failing the build."
)

ModuleDir = Annotated[Path, typer.Option("--dir", "-C", help="The module directory.")]
TestName = Annotated[str, typer.Argument(help="TestName or TestName/subtest.")]
PackageOpt = Annotated[
    str | None, typer.Option("--package", "-p", help="Only in this package (import path).")
]


def _module(directory: Path) -> Path:
    if not (directory / "go.mod").is_file():
        raise fail(f"{directory} has no go.mod: pass the module directory with --dir")
    return directory


@quarantine_app.command("add")
def quarantine_add(test: TestName, package: PackageOpt = None, directory: ModuleDir = Path()) -> None:
    """Quarantine a test: it still runs and is reported, but its failure does not fail the build."""
    from gocaas.quarantine import Quarantine, parse_entry, save
    from gocaas.quarantine import load as load_list

    root = _module(directory)
    try:
        entry = parse_entry(package, test)
        current = load_list(root)
        path = save(root, Quarantine((*current.entries, entry)))
    except GocaasError as exc:
        raise fail(exc.message, exc.exit_code) from None
    Console().print(f"quarantined {entry} in {path}", highlight=False)


@quarantine_app.command("remove")
def quarantine_remove(test: TestName, package: PackageOpt = None, directory: ModuleDir = Path()) -> None:
    """Take a test out of quarantine."""
    from gocaas.quarantine import Quarantine, parse_entry, save
    from gocaas.quarantine import load as load_list

    root = _module(directory)
    try:
        entry = parse_entry(package, test)
        current = load_list(root)
    except GocaasError as exc:
        raise fail(exc.message, exc.exit_code) from None
    if entry not in current.entries:
        raise fail(f"{entry} is not in quarantine")
    save(root, Quarantine(tuple(e for e in current.entries if e != entry)))
    Console().print(f"released {entry}", highlight=False)


@quarantine_app.command("list")
def quarantine_list(directory: ModuleDir = Path()) -> None:
    """The module's quarantined tests."""
    from gocaas.quarantine import load as load_list

    root = _module(directory)
    try:
        entries = load_list(root).entries
    except GocaasError as exc:
        raise fail(exc.message, exc.exit_code) from None
    for entry in entries:
        typer.echo(str(entry))


def flaky(
    module: Annotated[str | None, typer.Option(help="Only this module path.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """The flakiest tests across builds: runs, failures and flakes per test."""
    from gocaas.store import TestHistoryRepo, open_store

    settings = load()
    try:
        store = open_store(settings.db_url)
        try:
            rows = TestHistoryRepo(store).top(module, limit)
        finally:
            store.close()
    except GocaasError as exc:
        raise fail(exc.message, exc.exit_code) from None
    table = Table("module", "package", "test", "runs", "failures", "flakes")
    for row in rows:
        table.add_row(row.module, row.package, row.name, str(row.runs), str(row.failures), str(row.flakes))
    Console(soft_wrap=True).print(table)
