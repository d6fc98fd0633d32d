"""Stage: compile every package and link every main package, for every target of the matrix.

One `go build -o DIR/ ./...` per target does both (non-main packages are compiled and discarded). Targets run
in one bounded pool; since each go command is itself parallel, the pool's width times each command's -p
stays within the cores we have (the oversubscription GoReleaser users complain about).

The go build cache holds compiled packages but not linked binaries: go skips a link only when the output
file already exists with the right build ID. So each project and target keeps a stable output directory in
the data directory (locked while in use); an unchanged command is then not relinked. Only the binaries of
this build's main packages (`go list`) are taken from it, and anything else in it is removed first.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from gocaas.errors import GocaasError
from gocaas.pipeline.stage import BuildContext
from gocaas.source import Workspace
from gocaas.spec import STAMP_RE, Target
from gocaas.stages.gocmd import SourceResult, ToolchainResult, build_flags, go
from gocaas.stages.results import BuildResult

_MAJOR_SUFFIX = re.compile(r"^v[2-9][0-9]*$|^v1[0-9]+$")


def executable_name(import_path: str) -> str:
    """The file name go gives a main package's binary: its last path element, skipping a /vN suffix."""
    parts = import_path.rstrip("/").split("/")
    if len(parts) > 1 and _MAJOR_SUFFIX.fullmatch(parts[-1]):
        return parts[-2]
    return parts[-1]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def link_dir(ctx: BuildContext, target: Target) -> Path:
    """The stable output directory of this project (its source location) for one target."""
    source = ctx.spec.source
    project = hashlib.sha256(f"{source.kind}\0{source.location}".encode()).hexdigest()[:20]
    return ctx.settings.home / "links" / project / f"{target.goos}_{target.goarch}"


def main_packages(ctx: BuildContext, target: Target, stable: Path) -> list[str]:
    """Import paths of the module's main packages for a target, from `go list`.

    The answer depends only on the source, the target, cgo and the toolchain, so it is remembered under that
    key beside the stable directory: an unchanged module does not pay for a second go command.
    """
    toolchain = ctx.need(ToolchainResult).toolchain
    digest = ctx.need(SourceResult).workspace.digest
    key = f"{digest} {target} cgo={ctx.spec.options.cgo} go{toolchain.version} {toolchain.goroot}"
    memo = stable.with_name(stable.name + ".mains.json")
    try:
        remembered = json.loads(memo.read_text(encoding="utf-8"))
        if remembered.get("key") == key:
            return list(remembered["mains"])
    except (OSError, ValueError, KeyError):
        pass
    listed = go(
        ctx, ["list", "-e", "-f", '{{if eq .Name "main"}}{{.ImportPath}}{{end}}', "./..."], target=target
    ).stdout.split()
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps({"key": key, "mains": listed}), encoding="utf-8")
    tmp.replace(memo)
    return listed


def plan_parallelism(targets: int, cores: int) -> tuple[int, int]:
    """(concurrent go commands, -p for each) so that their product never exceeds the cores."""
    width = max(1, min(targets, cores))
    return width, max(1, cores // width)


def version_stamp(ctx: BuildContext, workspace: Workspace) -> str | None:
    if ctx.spec.options.version is not None:
        return ctx.spec.options.version
    describe = workspace.describe
    if describe and STAMP_RE.fullmatch(describe):
        return describe.removeprefix("v") if describe[1:2].isdigit() else describe
    return None


def ldflags(strip: bool, stamp: str | None, commit: str | None) -> str | None:
    flags = ["-s", "-w"] if strip else []
    if stamp is not None:
        flags.append(f"-X=main.version={stamp}")
    if commit is not None:
        flags.append(f"-X=main.commit={commit}")
    return " ".join(flags) or None


class BuildStage:
    name: ClassVar[str] = "build"

    def run(self, ctx: BuildContext) -> BuildResult:
        workspace = ctx.need(SourceResult).workspace
        targets = ctx.need(ToolchainResult).targets
        stamp = version_stamp(ctx, workspace)
        flags = ldflags(ctx.spec.options.strip, stamp, workspace.commit)
        width, per_command = plan_parallelism(len(targets), ctx.settings.effective_cores())
        ctx.log.line(f"{len(targets)} targets, {width} at a time, go build -p {per_command}")

        def build_one(target: Target) -> tuple[Path, ...]:
            ctx.log.target_started(str(target))
            start = time.monotonic()
            ok = False
            try:
                binaries = self._build_target(ctx, target, per_command, flags)
                ok = True
            finally:
                ctx.log.target_finished(str(target), ok, time.monotonic() - start)
            return binaries

        binaries: dict[Target, tuple[Path, ...]] = {}
        errors: list[GocaasError] = []
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="build") as pool:
            futures = {target: pool.submit(build_one, target) for target in targets}
            for target, future in futures.items():
                try:
                    binaries[target] = future.result()
                except GocaasError as exc:
                    errors.append(exc)
        if errors:
            # A compile error is the same on every target; an infrastructure error matters more than code.
            errors.sort(key=lambda e: e.exit_code, reverse=True)
            raise errors[0]
        return BuildResult(binaries, stamp)

    @staticmethod
    def _build_target(
        ctx: BuildContext, target: Target, per_command: int, flags: str | None
    ) -> tuple[Path, ...]:
        """Build into the stable directory under its lock; copy this build's binaries out before unlocking."""
        stable = link_dir(ctx, target)
        wanted = {executable_name(path) + target.exe_suffix for path in main_packages(ctx, target, stable)}
        outdir = ctx.dirs.bin / f"{target.goos}_{target.goarch}"
        outdir.mkdir(parents=True, exist_ok=True)
        args = ["build", "-p", str(per_command), *build_flags(ctx.spec.options)]
        if flags:
            args += ["-ldflags", flags]
        with _locked(stable.with_name(stable.name + ".lock")):
            stable.mkdir(parents=True, exist_ok=True)
            for stale in stable.iterdir():
                if stale.name not in wanted:
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            go(ctx, [*args, "-o", f"{stable}/", "./..."], target=target, writable=(stable,))
            for name in wanted:
                if (stable / name).is_file():
                    shutil.copy2(stable / name, outdir / name)
        return tuple(sorted(p for p in outdir.iterdir() if p.is_file()))
