"""`gocaas serve` and `gocaas token`: running the service and managing who may use it."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from gocaas.cli.common import err_console, fail, load
from gocaas.errors import GocaasError

token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens for the service (stored hashed).")


def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind. Loopback by default: expose it on purpose.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")] = 8080,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=256,
            help="Worker processes; default: one per two cores. 0: the API only, no builds run.",
        ),
    ] = None,
    log_json: Annotated[
        bool | None,
        typer.Option("--log-json/--log-text", help="Log format; default: JSON unless a terminal."),
    ] = None,
) -> None:
    """Run the HTTP API and a local executor with worker processes, on SQLite in the data directory (or
    GOCAAS_DATABASE_URL)."""
    import uvicorn

    from gocaas.executor import EXECUTORS
    from gocaas.executor.local import lock_data_dir
    from gocaas.logs import configure_logging
    from gocaas.server import create_app, worker_count
    from gocaas.store import open_store
    from gocaas.store.tenants import TenantRepo

    if not host.strip():  # bind() takes "" as every interface: exposing the service must be said outright
        raise fail("--host is empty: give an address (127.0.0.1: this machine only, 0.0.0.0: all of them)")
    settings = load(server_workers=workers or None)
    if settings.server_executor not in EXECUTORS:
        raise fail(f"unknown server_executor {settings.server_executor!r} (known: {', '.join(EXECUTORS)})")
    configure_logging(json=log_json)
    try:
        if workers != 0:
            lock_data_dir(settings.home).close()  # a clear error now rather than a failed startup later
        with open_store(settings.db_url) as store:
            tenants = TenantRepo(store)
            if tenants.token_count() == 0:
                first = tenants.create_token("admin", label="created on first start", admin=True)
                err_console().print(
                    "[bold]First start:[/] an admin token for tenant 'admin' (shown once, keep it):"
                )
                typer.echo(first.token)
    except GocaasError as e:
        raise fail(e.message, e.exit_code) from None
    count = 0 if workers == 0 else worker_count(settings)
    try:  # bound before anything starts: a taken port is a clear error, and port 0 is told as the real one
        sock = listening_socket(host, port)
    except OSError as e:
        raise fail(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    typer.echo(f"gocaas serving on http://{shown}:{bound_port} with {count} workers", err=True)
    app = create_app(settings, run_executor=count > 0)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (an IPv6 literal when host has a colon), as uvicorn binds one."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@token_app.command("create")
def token_create(
    tenant: Annotated[str, typer.Option(help="The tenant the token acts for (created if new).")],
    label: Annotated[str, typer.Option(help="What the token is for, e.g. 'ci'.")] = "",
    admin: Annotated[bool, typer.Option(help="An admin token.")] = False,
) -> None:
    """Create a token for TENANT and print it on the last line (it is stored hashed: copy it now)."""
    from gocaas.store import open_store
    from gocaas.store.tenants import TenantRepo

    settings = load()
    try:
        with open_store(settings.db_url) as store:
            new = TenantRepo(store).create_token(tenant, label=label, admin=admin)
    except GocaasError as e:
        raise fail(e.message, e.exit_code) from None
    err_console().print(f"token for tenant {new.principal.tenant!r} (shown once):")
    typer.echo(new.token)


@token_app.command("revoke")
def token_revoke(token: Annotated[str, typer.Argument(help="The token to revoke.")]) -> None:
    """Revoke a token: requests with it fail within seconds."""
    from gocaas.store import open_store
    from gocaas.store.tenants import TenantRepo

    settings = load()
    try:
        with open_store(settings.db_url) as store:
            revoked = TenantRepo(store).revoke(token)
    except GocaasError as e:
        raise fail(e.message, e.exit_code) from None
    if not revoked:
        raise fail("no such token (or it was already revoked)")
    err_console().print("revoked")
