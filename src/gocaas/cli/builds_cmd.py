"""`gocaas builds`: housekeeping of the build records in the data directory."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from gocaas.cli.common import err_console, fail, load
from gocaas.errors import GocaasError

MIN_DAYS, MAX_DAYS = 1 / 24, 36500.0

builds_app = typer.Typer(no_args_is_help=True, help="Build records in the data directory.")


@builds_app.command("prune")
def prune(
    older_than: Annotated[
        float | None,
        typer.Option(
            help="Days a finished build is kept, from 1 hour (0.042) to 100 years; default: the "
            "server_keep_days setting."
        ),
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
    if older_than is not None and not MIN_DAYS <= older_than <= MAX_DAYS:  # also NaN
        raise fail(
            f"--older-than {older_than:g}: give a number of days from {MIN_DAYS:.3f} (one hour: less would "
            f"forget every finished build) to {MAX_DAYS:g}"
        )
    try:
        with open_store(settings.db_url) as store:
            pruned = prune_builds(settings, BuildRepo(store), keep_days=older_than)
    except GocaasError as e:
        raise fail(e.message, e.exit_code) from None
    err_console().print(
        f"pruned {pruned.records} service builds and {pruned.directories} command-line build directories",
        highlight=False,
    )
