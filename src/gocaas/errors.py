"""The one error tree of gocaas.

Subprocess, filesystem and network failures are translated into these at the boundary where they happen,
so the pipeline, the CLI and (later) the server decide on exit codes and HTTP statuses from the class alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from gocaas.go.diagnostics import Diagnostic


class FailureClass(StrEnum):
    """Whose fault a failed build is: the user's (their code or their input) or ours (infrastructure)."""

    USER = "user"
    INFRASTRUCTURE = "infrastructure"


class ExitCode:
    OK = 0
    CODE_FAILED = 1
    BAD_INPUT = 2
    INFRASTRUCTURE = 3


class GocaasError(Exception):
    """Base of every error gocaas raises on purpose. `kind` is a stable machine-readable name."""

    failure_class: ClassVar[FailureClass] = FailureClass.INFRASTRUCTURE
    default_kind: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = ExitCode.INFRASTRUCTURE

    def __init__(
        self, message: str, *, kind: str | None = None, diagnostics: Sequence[Diagnostic] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind or self.default_kind
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)


class UserCodeError(GocaasError):
    """The module itself is broken: compile or type error, vet finding, go.sum problem, failing test."""

    failure_class = FailureClass.USER
    default_kind = "compile_error"
    exit_code = ExitCode.CODE_FAILED


class BadInput(GocaasError):
    """What we were asked to build is unusable: a bad path, archive, version, target, flag or setting."""

    failure_class = FailureClass.USER
    default_kind = "bad_input"
    exit_code = ExitCode.BAD_INPUT


class InfraError(GocaasError):
    """Not the user's fault: network or proxy after retries, toolchain install, timeout, memory, a kill."""

    failure_class = FailureClass.INFRASTRUCTURE
    default_kind = "infrastructure"
    exit_code = ExitCode.INFRASTRUCTURE


class TransientError(InfraError):
    """An infrastructure failure worth retrying (connection refused, a 5xx from the proxy)."""

    default_kind = "network"
