"""Stage: take the source into the build's workspace and digest it.

Intake always fills a fresh `incoming` directory (safe extraction, copy or clone); the result is then synced
into the workspace's `src`, where unchanged files keep their identity and every file gets a modification
time derived from its content (gocaas.source.stable), so go's test cache recognises unchanged inputs.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import ClassVar

from gocaas.pipeline.stage import BuildContext
from gocaas.source import intake
from gocaas.source.fastsync import fast_sync
from gocaas.source.stable import MANIFEST, sync_tree
from gocaas.spec import SourceKind
from gocaas.stages.gocmd import SourceResult


class SourceStage:
    name: ClassVar[str] = "source"

    def run(self, ctx: BuildContext) -> SourceResult:
        source = ctx.spec.source
        if source.kind is SourceKind.DIRECTORY and source.changed_since is None:
            fast = fast_sync(
                Path(source.location), ctx.dirs.src, ctx.dirs.src.parent / MANIFEST, ctx.settings
            )
            if fast is not None:
                workspace, synced = fast
                ctx.log.line(
                    f"workspace {workspace.root} ({workspace.file_count} files, {workspace.digest}): "
                    f"{synced.kept} unchanged, {synced.written} copied, {synced.removed} removed"
                )
                return SourceResult(workspace, synced.changed)
        incoming = ctx.dirs.incoming
        shutil.rmtree(incoming, ignore_errors=True)
        taken = intake(ctx.spec.source, incoming, ctx.settings)
        # The module root (a tarball's top directory, say) becomes the workspace's src itself.
        target = ctx.dirs.src
        synced = sync_tree(taken.root, target, taken.manifest, ctx.dirs.src.parent / MANIFEST)
        shutil.rmtree(incoming, ignore_errors=True)
        workspace = dataclasses.replace(taken, root=target)
        ctx.log.line(
            f"workspace {workspace.root} ({workspace.file_count} files, {workspace.digest}): "
            f"{synced.kept} unchanged, {synced.written} written, {synced.removed} removed"
        )
        return SourceResult(workspace, synced.changed)
