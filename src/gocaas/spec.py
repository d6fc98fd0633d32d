"""BuildSpec: what to build, validated and frozen. Every input from a user becomes one of these fields;
nothing else from a request reaches the go command."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gocaas.go.version import GoVersion

_WORD = r"[a-z0-9]{1,32}"
_TARGET_RE = re.compile(rf"^({_WORD})/({_WORD})$")
# Version stamps become `-X main.version=...` inside -ldflags: no spaces, quotes or '=' that could add flags.
STAMP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$")
# A git ref: what `git check-ref-format` accepts, plus a bare commit id; never an option.
_REF_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/+-]{1,200}(?<!\.lock)(?<![./])$")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Target(Frozen):
    """One GOOS/GOARCH pair. Syntax is checked here; `go tool dist list` once a toolchain is known."""

    goos: Annotated[str, Field(pattern=f"^{_WORD}$")]
    goarch: Annotated[str, Field(pattern=f"^{_WORD}$")]

    @classmethod
    def parse(cls, text: str) -> Target:
        match = _TARGET_RE.match(text.strip())
        if not match:
            raise ValueError(f"not a target: {text!r} (expected GOOS/GOARCH such as linux/amd64)")
        return cls(goos=match.group(1), goarch=match.group(2))

    @property
    def exe_suffix(self) -> str:
        return ".exe" if self.goos == "windows" else ""

    def __str__(self) -> str:
        return f"{self.goos}/{self.goarch}"


class SourceKind(StrEnum):
    DIRECTORY = "directory"
    ARCHIVE = "archive"
    GIT = "git"


class SourceSpec(Frozen):
    kind: SourceKind
    location: Annotated[str, Field(min_length=1, max_length=4096)]
    ref: str | None = None

    @field_validator("ref")
    @classmethod
    def _valid_ref(cls, value: str | None) -> str | None:
        if value is not None and not _REF_RE.match(value):
            raise ValueError(f"not a usable git ref: {value!r}")
        return value


class ArchiveFormat(StrEnum):
    TAR_GZ = "tar.gz"
    ZIP = "zip"


class BuildOptions(Frozen):
    go_version: GoVersion | None = None
    targets: Annotated[tuple[Target, ...], Field(min_length=1, max_length=64)]
    cgo: bool = False
    vet: bool = True
    version: str | None = Field(default=None, description="Stamped with -ldflags -X main.version=...")
    strip: bool = Field(default=False, description="Link with -s -w.")
    archives: ArchiveFormat | None = None

    @field_validator("version")
    @classmethod
    def _valid_stamp(cls, value: str | None) -> str | None:
        if value is not None and not STAMP_RE.match(value):
            raise ValueError(
                f"not a usable version stamp: {value!r} (letters, digits and . _ + ~ -, at most 128)"
            )
        return value

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, value: tuple[Target, ...]) -> tuple[Target, ...]:
        seen: dict[Target, None] = {}
        for target in value:
            seen.setdefault(target)
        return tuple(seen)


class BuildSpec(Frozen):
    source: SourceSpec
    options: BuildOptions
