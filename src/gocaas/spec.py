"""BuildSpec: what to build, validated and frozen. Every input from a user becomes one of these fields;
nothing else from a request reaches the go command."""

from __future__ import annotations

import platform
import re
import sys
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gocaas.go.version import GoVersion

_WORD = r"[a-z0-9]{1,32}"
_TARGET_RE = re.compile(rf"^({_WORD})/({_WORD})$")
# Version stamps become `-X main.version=...` inside -ldflags: no spaces, quotes or '=' that could add flags.
STAMP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$")
# A git ref: what `git check-ref-format` accepts, plus a bare commit id; never an option.
_REF_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/+-]{1,200}(?<!\.lock)(?<![./])$")
# --changed-since takes a revision: a ref, optionally walked back with ~N and ^N (HEAD~1, main^2).
_REVISION_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/+-]{1,200}(?:[~^][0-9]{0,4})*$")


_MACHINES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i686": "386",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Target(Frozen):
    """One GOOS/GOARCH pair. Syntax is checked here; `go tool dist list` once a toolchain is known."""

    goos: Annotated[str, Field(pattern=f"^{_WORD}$")]
    goarch: Annotated[str, Field(pattern=f"^{_WORD}$")]

    @classmethod
    def parse(cls, text: str) -> Target:
        match = _TARGET_RE.fullmatch(text.strip())
        if not match:
            raise ValueError(f"not a target: {text!r} (expected GOOS/GOARCH such as linux/amd64)")
        return cls(goos=match.group(1), goarch=match.group(2))

    @classmethod
    def host(cls) -> Target:
        """This machine's GOOS/GOARCH: the default target."""
        machine = platform.machine().lower()
        return cls(goos=sys.platform.removesuffix("32"), goarch=_MACHINES.get(machine, machine))

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
    changed_since: str | None = Field(
        default=None, description="A git ref: the files changed since it select the packages to test."
    )
    module: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^[\x21-\x7e]+$",
        description="The module path, when known before intake (the server reads it from an upload): builds "
        "of one module share a stable workspace, so go's test cache keeps working across uploads.",
    )

    @field_validator("ref")
    @classmethod
    def _valid_ref(cls, value: str | None) -> str | None:
        if value is not None and not _REF_RE.fullmatch(value):
            raise ValueError(f"not a usable git ref: {value!r}")
        return value

    @field_validator("changed_since")
    @classmethod
    def _valid_revision(cls, value: str | None) -> str | None:
        if value is not None and not _REVISION_RE.fullmatch(value):
            raise ValueError(f"not a usable git revision: {value!r} (a ref, e.g. main, HEAD~1, v1.2.0)")
        return value


class ArchiveFormat(StrEnum):
    TAR_GZ = "tar.gz"
    ZIP = "zip"


class FlakyPolicy(StrEnum):
    """What a flaky test (failed, then passed alone) does to the build."""

    FAIL = "fail"
    WARN = "warn"


_SHUFFLE_RE = re.compile(r"^(auto|on|off|-?[0-9]{1,20})$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
_TIER_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class TestOptions(Frozen):
    """How the test stage runs `go test`. Each field becomes one typed go test flag, never free text."""

    __test__: ClassVar[bool] = False  # not a pytest class

    enabled: bool = True
    coverage: bool = Field(default=False, description="-coverprofile; merged profile, percentages, HTML.")
    coverpkg_all: bool = Field(default=False, description="-coverpkg=./... (cover every package).")
    reruns: int = Field(default=2, ge=0, le=10, description="Re-runs of a failed test, alone.")
    rerun_threshold: int = Field(default=10, ge=0, description="More failures than this: no re-runs.")
    flaky: FlakyPolicy = FlakyPolicy.WARN
    shuffle: str = Field(
        default="auto",
        description='"auto" (shuffle what changed since the last build, let go cache the rest), "on", "off", '
        "or a seed to replay an order.",
    )
    race: bool = False
    count: int | None = Field(default=None, ge=1, le=10_000)
    run: str | None = Field(default=None, description="-run REGEXP")
    timeout: float | None = Field(
        default=None, gt=0, le=86_400, allow_inf_nan=False, description="-timeout, seconds."
    )
    tiers: tuple[str, ...] = Field(default=(), description="Tier names from settings; empty: the defaults.")

    @field_validator("shuffle")
    @classmethod
    def _valid_shuffle(cls, value: str) -> str:
        if not _SHUFFLE_RE.fullmatch(value) or (value[-1].isdigit() and not -(2**63) <= int(value) < 2**63):
            raise ValueError(f"not a shuffle setting: {value!r} (auto, on, off or a 64-bit integer seed)")
        return value

    @field_validator("run")
    @classmethod
    def _valid_run(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value or value.startswith("-") or len(value) > 512 or any(ord(c) < 32 for c in value):
            raise ValueError(f"not a usable -run pattern: {value!r}")
        return value

    @field_validator("tiers")
    @classmethod
    def _valid_tiers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _TIER_RE.fullmatch(name):
                raise ValueError(f"not a tier name: {name!r}")
        return value


class TestTier(Frozen):
    """A tier of tests (settings): its packages, build tags, timeout and parallelism."""

    __test__: ClassVar[bool] = False  # not a pytest class

    name: Annotated[str, Field(pattern=_TIER_RE.pattern)]
    packages: tuple[str, ...] = ("./...",)
    tags: tuple[str, ...] = ()
    timeout: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    parallel: int | None = Field(default=None, ge=1, description="-parallel; default from the machine.")
    p: int | None = Field(default=None, ge=1, description="-p; default from the machine.")
    default: bool = Field(default=True, description="Run when no --tier is given.")

    @field_validator("packages")
    @classmethod
    def _valid_packages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not re.fullmatch(r"^\./[A-Za-z0-9_./-]*$", pattern) or ".." in pattern.split("/"):
                raise ValueError(
                    f"not a package pattern inside the module: {pattern!r} (e.g. ./..., ./pkg/...)"
                )
        return value

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for tag in value:
            if not _TAG_RE.fullmatch(tag):
                raise ValueError(f"not a build tag: {tag!r}")
        return value


class BuildOptions(Frozen):
    go_version: GoVersion | None = None
    targets: Annotated[tuple[Target, ...], Field(min_length=1, max_length=64)]
    cgo: bool = False
    vet: bool = True
    version: str | None = Field(default=None, description="Stamped with -ldflags -X main.version=...")
    strip: bool = Field(default=False, description="Link with -s -w.")
    archives: ArchiveFormat | None = None
    tests: TestOptions = TestOptions()
    reuse: bool = Field(
        default=True, description="Reuse an identical earlier build's result (not itself a key input)."
    )

    @field_validator("version")
    @classmethod
    def _valid_stamp(cls, value: str | None) -> str | None:
        if value is not None and not STAMP_RE.fullmatch(value):
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
