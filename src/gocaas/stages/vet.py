"""Stage: `go vet ./...` for the host; findings are the user's code failing, with diagnostics."""

from __future__ import annotations

from typing import ClassVar

from gocaas.pipeline.stage import BuildContext, Skip
from gocaas.stages.gocmd import go, host_checks_flags


class VetStage:
    name: ClassVar[str] = "vet"

    def run(self, ctx: BuildContext) -> None:
        if not ctx.spec.options.vet:
            raise Skip("turned off (--no-vet)")
        go(ctx, ["vet", *host_checks_flags(ctx), "./..."])
