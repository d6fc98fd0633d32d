"""Stage: compile every package and link every main package, for every target of the matrix.

One `go build -o DIR/ ./...` per target does both (non-main packages are compiled and discarded). Targets run
in one bounded pool; since each go command is itself parallel, the pool's width times each command's -p
stays within the cores we have (the oversubscription GoReleaser users complain about).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from gocaas.errors import GocaasError
from gocaas.pipeline.stage import BuildContext
from gocaas.source import Workspace
from gocaas.spec import STAMP_RE, Target
from gocaas.stages.gocmd import SourceResult, ToolchainResult, go


@dataclass(frozen=True)
class BuildResult:
    binaries: dict[Target, tuple[Path, ...]]
    version_stamp: str | None


def plan_parallelism(targets: int, cores: int) -> tuple[int, int]:
    """(concurrent go commands, -p for each) so that their product never exceeds the cores."""
    width = max(1, min(targets, cores))
    return width, max(1, cores // width)


def version_stamp(ctx: BuildContext, workspace: Workspace) -> str | None:
    if ctx.spec.options.version is not None:
        return ctx.spec.options.version
    describe = workspace.describe
    if describe and STAMP_RE.match(describe):
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
            outdir = ctx.dirs.bin / f"{target.goos}_{target.goarch}"
            outdir.mkdir(parents=True, exist_ok=True)
            args = ["build", "-p", str(per_command)]
            if flags:
                args += ["-ldflags", flags]
            args += ["-o", f"{outdir}/", "./..."]
            ctx.log.target_started(str(target))
            start = time.monotonic()
            ok = False
            try:
                go(ctx, args, target=target)
                ok = True
            finally:
                ctx.log.target_finished(str(target), ok, time.monotonic() - start)
            return tuple(sorted(p for p in outdir.iterdir() if p.is_file()))

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
