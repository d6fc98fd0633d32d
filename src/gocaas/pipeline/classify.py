"""Failure classification: turning a failed go command into the error class that names whose fault it is."""

from __future__ import annotations

import errno
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
# ENOSPC and EDQUOT as Go and Python print them: a full disk, never the module's fault
_DISK_FULL = re.compile(r"^.*(?:no space left on device|disk quota exceeded).*$", re.M | re.I)


def first_lines(text: str, count: int = 6) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[:count])


def disk_full(what: str, path: str | Path | None) -> InfraError:
    """Out of disk space: the machine's failure, saying what the disk holding path has free now."""
    free = ""
    if path is not None:
        from gocaas.cache.diskspace import free_space

        try:
            room = free_space(str(path))[0]
            free = f" (the disk holding {path} has {room / (1 << 20):.1f} MiB free now)"
        except OSError:
            pass
    return InfraError(f"out of disk space: {what}{free}", kind="disk_full")


def stage_error(exc: Exception, stage: str, data_dir: Path | None = None) -> GocaasError:
    """What a stage raised, as the build's failure: a full disk is `disk_full` whether the stage let the
    OSError through or said what it was doing (an error raised from it); another exception that is not a
    GocaasError is a bug (`internal`)."""
    cause = exc.__cause__ if isinstance(exc, GocaasError) else exc
    if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
        path = cause.filename2 or cause.filename  # a copy's or a rename's second name is where it wrote
        if isinstance(exc, GocaasError):
            return disk_full(exc.message, path or data_dir)
        where = f" writing {path}" if path else ""
        return disk_full(f"the {stage} stage{where}: {cause.strerror}", path or data_dir)
    if isinstance(exc, GocaasError):
        return exc
    return InfraError(f"internal error in the {stage} stage: {exc!r}", kind="internal")


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
    if match := _DISK_FULL.search(go_messages(result)):  # not a test's own output
        return disk_full(f"{stage}: {match.group(0).strip()}", cache_dir and cache_dir.parent)
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
