"""`gocaas builds`: housekeeping of the build records in the data directory."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from gocaas.cli.common import err_console, fail, load
from gocaas.errors import GocaasError

builds_app = typer.Typer(no_args_is_help=True, help="Build records in the data directory.")


@builds_app.command("prune")
def prune(
    older_than: Annotated[
        float | None,
        typer.Option(min=0, help="Days a finished build is kept; default: the server_keep_days setting."),
    ] = None,
) -> None:
    """Forget finished builds older than that: the service's records (logs, artifacts) and the
    directories under builds/ that command-line builds left. Queued and running builds stay."""
    from gocaas.logs import configure_logging
    from gocaas.server.retention import prune_builds
    from gocaas.store import open_store
    from gocaas.store.builds import BuildRepo

    settings = load()
    configure_logging(json=False, level=logging.WARNING)  # the summary below says it; no log lines
    if older_than == 0:
        raise fail("--older-than 0 would forget every finished build: give a number of days above 0")
    try:
        with open_store(settings.db_url) as store:
            pruned = prune_builds(settings, BuildRepo(store), keep_days=older_than)
    except GocaasError as e:
        raise fail(e.message, e.exit_code) from None
    err_console().print(
        f"pruned {pruned.records} service builds and {pruned.directories} command-line build directories",
        highlight=False,
    )
