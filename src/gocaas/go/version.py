"""Go version strings ("1.25", "1.25.3", "go1.26rc1") parsed into comparable values."""

from __future__ import annotations

import re
from functools import total_ordering
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

_VERSION_RE = re.compile(r"^(?:go)?1\.(\d{1,3})(?:\.(\d{1,3}))?(?:(rc|beta)(\d{1,2}))?$")
_PRE_ORDER = {"beta": 0, "rc": 1, None: 2}


@total_ordering
class GoVersion:
    """A Go release or language version. "1.25" (a language version) sorts before "1.25.0"."""

    __slots__ = ("minor", "patch", "pre", "pre_num")

    def __init__(self, minor: int, patch: int | None = None, pre: str | None = None, pre_num: int = 0):
        self.minor = minor
        self.patch = patch
        self.pre = pre
        self.pre_num = pre_num

    @classmethod
    def parse(cls, text: str) -> GoVersion:
        match = _VERSION_RE.fullmatch(text.strip())
        if not match:
            raise ValueError(f"not a Go version: {text!r} (expected e.g. 1.25, 1.25.3 or go1.26rc1)")
        minor, patch, pre, pre_num = match.groups()
        return cls(int(minor), int(patch) if patch is not None else None, pre, int(pre_num or 0))

    def _key(self) -> tuple[int, int, int, int]:
        # Go's order: the language version "1.25" < 1.25beta1 < 1.25rc1 < 1.25.0 < 1.25.1.
        if self.patch is not None:
            return (self.minor, self.patch, 0, 0)
        if self.pre is None:
            return (self.minor, -2, 0, 0)
        return (self.minor, -1, _PRE_ORDER[self.pre], self.pre_num)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoVersion) and self._key() == other._key()

    def __lt__(self, other: GoVersion) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def line(self) -> str:
        """The release line, "1.25"."""
        return f"1.{self.minor}"

    def is_release(self) -> bool:
        return self.patch is not None and self.pre is None

    def satisfies(self, wanted: GoVersion) -> bool:
        """True if a toolchain of this version can build a module that asks for `wanted`.

        A module line `go 1.25` or `toolchain go1.25.3` is a minimum: any later toolchain builds it
        (GOTOOLCHAIN=local keeps the go command from switching on its own).
        """
        return self >= wanted

    def __str__(self) -> str:
        text = f"1.{self.minor}"
        if self.patch is not None:
            text += f".{self.patch}"
        if self.pre:
            text += f"{self.pre}{self.pre_num}"
        return text

    def __repr__(self) -> str:
        return f"GoVersion({str(self)!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        def validate(value: Any) -> GoVersion:
            if isinstance(value, GoVersion):
                return value
            if not isinstance(value, str):
                raise ValueError("a Go version must be a string such as 1.25.3")
            return cls.parse(value)

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.to_string_ser_schema()
        )
