"""Where settings come from besides the environment: the TOML config file (GOCAAS_CONFIG, else
config.toml in the data directory), and which source set a value, for errors that name it."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, TomlConfigSettingsSource

from gocaas.errors import BadInput


class BadSettings(BadInput):
    """A settings source that cannot be read: the config file is missing, not a file, or not TOML."""


def default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "gocaas"


def _config_file() -> tuple[Path, str]:
    """The config file, and how to name it in an error (GOCAAS_CONFIG=... when the user set it)."""
    explicit = os.environ.get("GOCAAS_CONFIG")
    if explicit:
        return Path(explicit), f"GOCAAS_CONFIG={explicit}"
    home = os.environ.get("GOCAAS_HOME")
    path = (Path(home) if home else default_home()) / "config.toml"
    return path, str(path)


class TomlFile(TomlConfigSettingsSource):
    """The config file; one set explicitly must exist, and a broken one is an error naming it."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        path, self.label = _config_file()
        try:
            path = path.expanduser()
        except RuntimeError as exc:  # ~user of no such user
            raise BadSettings(f"{self.label}: {exc}") from None
        if self.label.startswith("GOCAAS_CONFIG=") and not path.exists():
            raise BadSettings(f"{self.label}: no such file")
        if path.exists() and not path.is_file():
            raise BadSettings(f"{self.label}: not a regular file")
        super().__init__(settings_cls, path)

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        try:
            return super()._read_file(file_path)
        except tomllib.TOMLDecodeError as exc:
            raise BadSettings(f"{self.label}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise BadSettings(f"{self.label}: not UTF-8 text") from None
        except OSError as exc:
            raise BadSettings(f"{self.label}: cannot read it: {exc.strerror or exc}") from None


def setting_source(field: str) -> str | None:
    """Where a setting's value came from, for an error: its environment variable, or the config file
    that sets it; None when neither does (a default or an argument)."""
    for key in os.environ:
        if key.lower() == f"gocaas_{field}":
            return key
    path, label = _config_file()
    try:
        path = path.expanduser()
        data = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError, RuntimeError):
        data = {}
    return f"{field} in {label}" if field in data else None
