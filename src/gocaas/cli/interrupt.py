"""Ctrl-C, SIGTERM and SIGHUP stop gocaas's go commands before gocaas itself.

The go commands run in sessions of their own (go/runner.py), so the terminal's Ctrl-C and a CI runner's
SIGTERM to gocaas's process group never reach them; without this, an interrupted `gocaas test` would
leave `go test` running to its timeout. Ctrl-C then ends as a KeyboardInterrupt (Typer exits 130),
SIGTERM and SIGHUP as exit 128 + the signal: what a shell reports for a program those signals killed.
"""

from __future__ import annotations

import signal
from types import FrameType

from gocaas.go.runner import stop_running

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop(signum: int, _frame: FrameType | None) -> None:
    stop_running()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def stop_go_on_signals() -> None:
    """Install the handlers (main thread only), leaving a signal that was set to be ignored (nohup) so."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _stop)
