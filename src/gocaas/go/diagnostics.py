"""Compiler and vet output parsed into diagnostics: file (relative to the module root), line, column,
message."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict

_POSITION = re.compile(
    r"^(?:vet: )?(?P<file>[^\s:][^:\n]*?\.(?:go|s|c|h|mod|sum|work)):(?P<line>\d+)(?::(?P<col>\d+))?: "
    r"(?P<msg>.+)$"
)


MAX_CONTINUATION = 50


class Diagnostic(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: str
    line: int
    column: int | None = None
    message: str
    package: str | None = None

    def __str__(self) -> str:
        col = f":{self.column}" if self.column is not None else ""
        return f"{self.file}:{self.line}{col}: {self.message}"


def _relative(file: str, module_root: Path, cwd: Path) -> str:
    path = Path(file)
    absolute = path if path.is_absolute() else (cwd / path)
    try:
        return Path(os.path.normpath(absolute)).relative_to(module_root).as_posix()
    except ValueError:
        return file  # outside the module (a dependency in the module cache, GOROOT): keep as go wrote it


def parse_diagnostics(output: str, module_root: Path, cwd: Path | None = None) -> list[Diagnostic]:
    """Find every `file:line[:col]: message` in go build / go vet output.

    `# pkg` headers name the package of the lines that follow; tab-indented lines continue a message
    (the compiler's "have/want" notes; at most MAX_CONTINUATION of them are kept). Linear in the output:
    a damaged cache can make go print a whole cached binary.
    """
    cwd = cwd or module_root
    found: list[tuple[re.Match[str], str | None, list[str]]] = []
    package: str | None = None
    for raw in output.splitlines():
        if raw.startswith("# "):
            header = raw[2:].strip()
            # "# pkg", "# [pkg]" (vet) or "# pkg [pkg.test]" (a test binary)
            package = header[1:-1] if header.startswith("[") else header.split(" [", 1)[0]
            continue
        if raw.startswith("\t") and found:
            if len(found[-1][2]) < MAX_CONTINUATION:
                found[-1][2].append(raw.strip())
            continue
        match = _POSITION.match(raw.strip())
        if match:
            found.append((match, package, []))
    return [
        Diagnostic(
            file=_relative(match["file"], module_root, cwd),
            line=int(match["line"]),
            column=int(match["col"]) if match["col"] else None,
            message="\n".join([match["msg"].strip(), *notes]),
            package=package,
        )
        for match, package, notes in found
    ]
