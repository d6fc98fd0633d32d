"""Reading the `go` and `toolchain` lines of a go.mod: what Go version a module asks for."""

from __future__ import annotations

import re
from pathlib import Path

from gocaas.errors import BadInput
from gocaas.go.version import GoVersion

_GO_LINE = re.compile(r"^\s*go\s+(\S+)\s*(?://.*)?$", re.MULTILINE)
_TOOLCHAIN_LINE = re.compile(r"^\s*toolchain\s+(\S+)\s*(?://.*)?$", re.MULTILINE)


def required_go(module_root: Path) -> GoVersion | None:
    """The minimum Go version the module needs: its toolchain line if newer, else its go line."""
    gomod = module_root / "go.mod"
    try:
        text = gomod.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read go.mod: {exc}") from exc
    wanted: GoVersion | None = None
    for pattern, name in ((_GO_LINE, "go"), (_TOOLCHAIN_LINE, "toolchain")):
        match = pattern.search(text)
        if not match:
            continue
        value = match.group(1)
        if name == "toolchain" and value == "default":
            continue
        try:
            version = GoVersion.parse(value)
        except ValueError as exc:
            raise BadInput(f"go.mod: bad {name} line {value!r}: {exc}") from exc
        if wanted is None or version > wanted:
            wanted = version
    return wanted


_MODULE_LINE = re.compile(r"^\s*module\s+\"?([^\s\"]+)\"?", re.MULTILINE)


def module_path(module_root: Path) -> str:
    try:
        text = (module_root / "go.mod").read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"go.mod is not UTF-8 text (byte {exc.start})") from None
    match = _MODULE_LINE.search(text)
    if not match:
        raise BadInput("go.mod has no module line")
    return match.group(1)
