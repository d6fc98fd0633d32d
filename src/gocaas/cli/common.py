"""What every command shares: printing an error, loading settings, the host target."""

from __future__ import annotations

import json
import sys

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from gocaas.errors import ExitCode
from gocaas.settings import Settings


def err_console() -> Console:
    """A console on stderr, made when used: it detects the terminal and colours of the stderr it is made
    for (a daemon's child gets its client's stderr after import)."""
    return Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = ExitCode.BAD_INPUT, *, as_json: bool = False) -> typer.Exit:
    """Say what was wrong (and, for --json, say it on stdout too, in the report's failure shape)."""
    err_console().print(Text("error: ", style="bold red") + Text(message), highlight=False)
    if as_json:
        failure = {"class": "user", "kind": "bad_input", "stage": None, "message": message, "diagnostics": []}
        sys.stdout.write(json.dumps({"status": "failed", "exit_code": code, "failure": failure}) + "\n")
    return typer.Exit(code)


def validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"] if not isinstance(p, int)) or "input"
        parts.append(f"{field}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def load(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise fail(f"bad settings: {validation_message(exc)}") from None
