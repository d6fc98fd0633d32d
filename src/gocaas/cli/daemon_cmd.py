"""`gocaas daemon`: see and stop this user's daemons (gocaas.daemon)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gocaas.cli.common import fail
from gocaas.daemon.identity import BadMode, PidFile, daemon_paths, daemon_wanted, fingerprint, runtime_dir

daemon_app = typer.Typer(
    no_args_is_help=True,
    help="The background process that runs `gocaas build` and `gocaas test` without start-up time.",
)


def _daemons() -> list[tuple[str, int | None]]:
    """(fingerprint, pid or None when it is not running) of each daemon's files in the runtime directory."""
    directory = runtime_dir(os.environ)
    if directory is None:
        return []
    found = []
    for sock in sorted(Path(directory).glob("d-*.sock")):
        fp = sock.stem.removeprefix("d-")
        recorded = PidFile.read(str(sock.with_suffix(".pid")))
        pid = recorded.pid if recorded is not None and _alive(recorded.pid) else None
        found.append((fp, pid))
    return found


@daemon_app.command("status")
def status() -> None:
    """List the daemons: which one this gocaas would use, and their process ids."""
    directory = runtime_dir(os.environ)
    if directory is None:
        raise fail("no private runtime directory ($XDG_RUNTIME_DIR/gocaas or $TMPDIR/gocaas-UID): no daemon")
    current = fingerprint()
    table = Table("fingerprint", "pid", "state", title=f"daemons in {directory}")
    for fp, pid in _daemons():
        state = "running" if pid is not None else "stale socket"
        if fp == current:
            state += ", used by this gocaas"
        table.add_row(fp, str(pid or "—"), state)
    Console(soft_wrap=True).print(table)
    if not any(fp == current for fp, _ in _daemons()):
        Console(soft_wrap=True).print(
            "no daemon for this gocaas yet: the next `gocaas build` or `gocaas test` starts one",
            highlight=False,
        )


@daemon_app.command("start")
def start(
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for it to be ready.")] = 60.0,
) -> None:
    """Start this gocaas's daemon now rather than with the next command, and wait until it serves."""
    from gocaas.daemon.client import connectable, start_daemon

    current = fingerprint()
    paths = daemon_paths(os.environ, current)
    if paths is None:
        raise fail("no private runtime directory ($XDG_RUNTIME_DIR/gocaas or $TMPDIR/gocaas-UID): no daemon")
    try:
        if not daemon_wanted(os.environ):
            Console(stderr=True).print("note: GOCAAS_DAEMON is off here: commands will not use it")
    except BadMode as exc:
        raise fail(str(exc)) from None
    if not connectable(paths):
        start_daemon(paths, current)
        deadline = time.monotonic() + wait
        while not connectable(paths):
            if time.monotonic() > deadline:
                log = Path(paths.log)
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""
                raise fail(f"the daemon did not come up in {wait:g} s; its log ({log}):\n{tail}", code=3)
            time.sleep(0.05)
    recorded = PidFile.read(paths.pid)
    Console().print(f"daemon {recorded.pid if recorded else '?'} serving on {paths.socket}", highlight=False)


@daemon_app.command("stop")
def stop(
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for running commands to finish.")
    ] = 60.0,
) -> None:
    """Stop every daemon of this user. A daemon finishes the commands it is running first."""
    pids = [pid for _, pid in _daemons() if pid is not None]
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    left = pids
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in left if _alive(pid)]
    if left:
        raise fail(f"still running after {wait:g} s: {', '.join(map(str, left))}", code=3)
    Console().print(f"stopped {len(pids)} daemon{'s' if len(pids) != 1 else ''}", highlight=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # a zombie (its parent has not reaped it yet) has finished
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
