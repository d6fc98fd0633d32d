"""Failure classification: turning a failed go command into the error class that names whose fault it is."""

from __future__ import annotations

import re
from pathlib import Path

from gocaas.errors import BadInput, GocaasError, InfraError, TransientError, UserCodeError
from gocaas.go.diagnostics import parse_diagnostics
from gocaas.go.runner import OUT_OF_MEMORY, CommandResult
from gocaas.pipeline.cachedamage import cache_damage, cacheprog_failure, excerpt, go_messages

# The go command's words for a proxy or network that failed us (after which a retry may work).
_TRANSIENT = re.compile(
    r"dial tcp|connection refused|connection reset|i/o timeout|TLS handshake timeout|no such host"
    r"|server misbehaving|network is unreachable|unexpected EOF|: 5\d\d [A-Z][a-z]"
)
_KILLED = re.compile(r"signal: killed\s*$", re.M)  # a compiler the kernel's OOM killer stopped
_MISSING_SUM = re.compile(r"missing go\.sum entry[^\n]*")
_SECURITY = re.compile(r"SECURITY ERROR|checksum mismatch")
_NOT_FOUND = re.compile(r"unknown revision|invalid version|: 404 Not Found|: 410 Gone|not found: ")
_TOO_NEW = re.compile(r"go\.mod requires go >= \S+")
_SANDBOX = re.compile(r"^bwrap: .*$", re.M)  # bubblewrap's own errors: it could not set up or start go


def first_lines(text: str, count: int = 6) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[:count])


def is_transient(output: str) -> bool:
    return bool(_TRANSIENT.search(output))


def classify(
    result: CommandResult,
    *,
    stage: str,
    module_root: Path,
    cwd: Path | None = None,
    goroot: Path | None = None,
    cache_dir: Path | None = None,
) -> GocaasError:
    """The error for a go command that exited non-zero, most specific first."""
    output = result.output
    if _SECURITY.search(output):
        return UserCodeError(
            f"module checksum mismatch (the go command's SECURITY ERROR): {first_lines(output, 8)}",
            kind="checksum_mismatch",
        )
    if match := _MISSING_SUM.search(output):
        return UserCodeError(match.group(0), kind="missing_go_sum")
    if OUT_OF_MEMORY.search(output) or _KILLED.search(output):
        return InfraError(
            f"{stage}: the go command was killed or ran out of memory: {first_lines(output)}",
            kind="out_of_memory",
        )
    if match := _TOO_NEW.search(output):
        return BadInput(f"{match.group(0)} but the resolved toolchain is older", kind="toolchain_too_old")
    diagnostics = parse_diagnostics(output, module_root, cwd)
    messages = go_messages(result)
    if evidence := cache_damage(messages, parse_diagnostics(messages, module_root, cwd), goroot, cache_dir):
        shown = excerpt(messages, count=10)
        return InfraError(
            f"{stage}: {evidence}, not this module's code: a damaged build cache (local, or a remote "
            f"cache's entries) or toolchain (`gocaas cache verify` checks the local one):\n{shown}",
            kind="toolchain_or_cache",
            diagnostics=diagnostics,
        )
    if match := _SANDBOX.search(messages):
        return InfraError(f"{stage}: the build sandbox failed: {match.group(0)}", kind="sandbox")
    if failure := cacheprog_failure(messages):
        return InfraError(f"{stage}: the build cache program failed: {failure}", kind="cache_program")
    if diagnostics:
        kind = "vet_finding" if stage == "vet" else "compile_error"
        what = "go vet found problems" if stage == "vet" else "compilation failed"
        shown = "\n".join(str(d) for d in diagnostics[:10])
        return UserCodeError(f"{what}:\n{shown}", kind=kind, diagnostics=diagnostics)
    if is_transient(output):
        return TransientError(f"{stage}: network or module proxy failure: {first_lines(output)}")
    if _NOT_FOUND.search(output):
        return UserCodeError(
            f"a required module could not be found: {first_lines(output)}", kind="module_not_found"
        )
    return UserCodeError(f"{stage} failed: {first_lines(output, 10)}", kind=f"{stage}_failed")
