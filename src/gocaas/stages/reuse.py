"""Stage: reuse an identical earlier build (the result cache).

A build whose inputs — source digest, toolchain, targets, options and the settings that change what is built
— match an earlier successful build's returns that build's report and files without running go, and says
so with the earlier build's id. The inputs are written to the build directory (`inputs.json`), which is what
`gocaas cache explain` compares when a build missed that was expected to hit.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from typing import Any, ClassVar

from gocaas.atomic import replacing
from gocaas.cache.results import CachedResult, ResultCache
from gocaas.pipeline.stage import BuildContext, Skip
from gocaas.stages.gocmd import SourceResult, ToolchainResult

KEY_VERSION = 1
INPUTS_FILE = "inputs.json"
FILES_FILE = "files.json"  # each source file's own hash: what `gocaas cache explain` compares


@dataclass(frozen=True)
class ResultKey:
    key: str
    inputs: dict[str, Any]


@dataclass(frozen=True)
class ResultHit:
    key: str
    cached: CachedResult


def key_inputs(ctx: BuildContext) -> dict[str, Any]:
    """Everything that can change what a build produces, by name (documented in the README)."""
    workspace = ctx.need(SourceResult).workspace
    toolchain = ctx.need(ToolchainResult).toolchain
    options = ctx.spec.options.model_dump(mode="json", exclude={"reuse"})
    options["targets"] = [str(target) for target in ctx.spec.options.targets]
    return {
        "key_version": KEY_VERSION,
        "source_digest": workspace.digest,
        "git_describe": workspace.describe,  # the default version stamp
        "git_commit": workspace.commit,  # stamped as main.commit
        "changed_since": ctx.spec.source.changed_since,
        "changed_files": sorted(workspace.changed_files) if workspace.changed_files is not None else None,
        "go_version": str(toolchain.version),
        "goroot": str(toolchain.goroot),
        "options": options,
        "settings": {
            "test_tiers": [tier.model_dump(mode="json") for tier in ctx.settings.test_tiers],
            "goproxy": ctx.settings.goproxy,  # which proxy's bytes; go.sum pins them, but a private module's
            "goprivate": ctx.settings.goprivate,
        },
        "stages": ctx.stage_names,
    }


def result_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ReuseStage:
    name: ClassVar[str] = "reuse"

    def run(self, ctx: BuildContext) -> ResultKey | ResultHit:
        inputs = key_inputs(ctx)
        key = result_key(inputs)
        (ctx.dirs.root / INPUTS_FILE).write_text(
            json.dumps({"key": key, **inputs}, indent=2), encoding="utf-8"
        )
        files = ctx.need(SourceResult).workspace.manifest
        (ctx.dirs.root / FILES_FILE).write_text(json.dumps(files, sort_keys=True), encoding="utf-8")
        if not (ctx.spec.options.reuse and ctx.settings.reuse_results):
            ctx.publish(ResultKey(key, inputs))
            raise Skip("turned off (--no-reuse or the reuse_results setting): building again")
        cached = ResultCache(ctx.settings.results_dir).lookup(key)
        if cached is None:
            ctx.log.line(f"result key {key}: no earlier identical build")
            return ResultKey(key, inputs)
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        for path in cached.files.iterdir():
            with replacing(ctx.out_dir / path.name) as tmp:
                shutil.copyfile(path, tmp)
                shutil.copymode(path, tmp)
        ctx.log.note(
            f"identical to build {cached.document.get('build_id')}: its result is reused, go not run"
        )
        return ResultHit(key, cached)
