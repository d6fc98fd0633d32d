"""What every command shares: printing an error, loading settings, the host target."""

from __future__ import annotations

import json
import sys

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.text import Text

from gocaas.config_file import BadSettings, setting_source
from gocaas.errors import ExitCode
from gocaas.settings import Settings

# The settings that command-line options override, by option: an error names the option.
_OPTIONS = {"build_timeout": "--timeout", "server_workers": "--workers"}


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


def settings_message(exc: ValidationError, overrides: dict[str, object]) -> str:
    """What was wrong with the settings, each named as the user gave it: the command-line option, the
    GOCAAS_* environment variable, or the key in the config file."""
    parts, from_options = [], True
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "input"
        if field in overrides and field in _OPTIONS:
            name = _OPTIONS[field]
        else:
            name, from_options = setting_source(field) or field, False
        inner = ".".join(str(p) for p in error["loc"][1:] if not isinstance(p, int))
        message = "not a setting" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{name}: {inner + ': ' if inner else ''}{message.removeprefix('Value error, ')}")
    return "; ".join(parts) if from_options else f"bad settings: {'; '.join(parts)}"


def load(**overrides: object) -> Settings:
    """The settings, or a bad-input exit naming what is wrong; the data directory exists afterwards."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        raise fail(settings_message(exc, given)) from None
    except BadSettings as exc:
        raise fail(f"bad settings: {exc.message}") from None
    except SettingsError as exc:  # a value pydantic-settings could not decode (it names the field)
        raise fail(f"bad settings: {exc}") from None
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        name = setting_source("home") or "the data directory"
        raise fail(f"bad settings: {name}: cannot create {settings.home}: {exc.strerror or exc}") from None
    return settings
