"""Stage: take the source into a private workspace and digest it."""

from __future__ import annotations

from typing import ClassVar

from gocaas.pipeline.stage import BuildContext
from gocaas.source import intake
from gocaas.stages.gocmd import SourceResult


class SourceStage:
    name: ClassVar[str] = "source"

    def run(self, ctx: BuildContext) -> SourceResult:
        workspace = intake(ctx.spec.source, ctx.dirs.src, ctx.settings)
        ctx.log.line(f"workspace {workspace.root} ({workspace.file_count} files, {workspace.digest})")
        return SourceResult(workspace)
