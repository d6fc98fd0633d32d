"""The `gocaas` entry point: hand `build` and `test` to the daemon when one is up (gocaas.daemon), else
run the command in this process. Imports nothing heavy before it knows which."""

from __future__ import annotations

import sys


def main() -> None:
    from gocaas.daemon.client import run

    code = run(sys.argv)
    if code is not None:
        sys.exit(code)
    from gocaas.cli.app import main as cli_main

    cli_main()
