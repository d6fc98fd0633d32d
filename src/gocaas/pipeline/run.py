"""Running a build: the ordered default pipeline, with timing, logging and error handling wrapped around
each stage's `run`, and the BuildReport assembled from the stages' typed results."""

from __future__ import annotations

import importlib
import secrets
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from gocaas.atomic import replacing
from gocaas.cache.tally import tally
from gocaas.errors import ExitCode, GocaasError
from gocaas.go.env import BuildDirs
from gocaas.pipeline.classify import stage_error
from gocaas.pipeline.events import EventSink, StageFinished, StageStarted, discard
from gocaas.pipeline.reuse import remember, reused_report
from gocaas.pipeline.stage import BuildContext, Skip, Stage, StageLog
from gocaas.pipeline.workspace import build_dirs, is_stable
from gocaas.report.model import (
    BuildReport,
    BuildStatus,
    CacheUse,
    Failure,
    ResourceLimits,
    SourceInfo,
    StageRecord,
    StageStatus,
)
from gocaas.settings import Settings
from gocaas.spec import BuildSpec
from gocaas.stages.gocmd import CACHE_STATS, SandboxChoice, SourceResult, ToolchainResult
from gocaas.stages.limits import LimitHit, LimitsChoice, blame_limit, release
from gocaas.stages.results import BuildResult, PackageResult, TestStageResult
from gocaas.stages.reuse import ResultHit, ResultKey, ReuseStage
from gocaas.stages.source import SourceStage
from gocaas.stages.toolchain import ToolchainStage


class LazyStage:
    """A stage whose module is imported when it first runs: the stages after the result cache's check are
    most of the pipeline's code, and a build that check answers never needs them (stages/results.py)."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self._target = target  # "module:Class"
        self._stage: Stage | None = None

    def run(self, ctx: BuildContext) -> object | None:
        if self._stage is None:
            module, _, cls = self._target.partition(":")
            stage = getattr(importlib.import_module(module), cls)()
            if stage.name != self.name:
                raise TypeError(f"{self._target} is stage {stage.name!r}, not {self.name!r}")
            self._stage = stage
        return self._stage.run(ctx)


MODULES = LazyStage("modules", "gocaas.stages.modules:ModulesStage")
TEST = LazyStage("test", "gocaas.stages.test:TestStage")

DEFAULT_STAGES: tuple[Stage, ...] = (
    SourceStage(),
    ToolchainStage(),
    ReuseStage(),
    MODULES,
    LazyStage("vet", "gocaas.stages.vet:VetStage"),
    TEST,
    LazyStage("build", "gocaas.stages.build:BuildStage"),
    LazyStage("package", "gocaas.stages.package:PackageStage"),
)

# `gocaas test`: go test runs a subset of vet itself, and nothing is linked or packaged.
TEST_STAGES: tuple[Stage, ...] = (SourceStage(), ToolchainStage(), ReuseStage(), MODULES, TEST)


def new_build_id() -> str:
    """Sortable by time, unique without coordination: 20261125T163000-3f9a1c2e."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def run_build(
    spec: BuildSpec,
    settings: Settings,
    *,
    out_dir: Path,
    sink: EventSink = discard,
    build_id: str | None = None,
    stages: Sequence[Stage] = DEFAULT_STAGES,
    keep_workspace: bool = False,
) -> BuildReport:
    build_id = build_id or new_build_id()
    with build_dirs(settings, spec.source, build_id) as dirs:
        dirs.create()
        report = _run(spec, settings, dirs, out_dir, sink, build_id, stages)
        if not keep_workspace:
            # The stable workspace's src stays for the next build: that is its point.
            for path in (*dirs.scratch, *(() if is_stable(dirs) else (dirs.src,))):
                shutil.rmtree(path, ignore_errors=True)
    return report


def _run(
    spec: BuildSpec,
    settings: Settings,
    dirs: BuildDirs,
    out_dir: Path,
    sink: EventSink,
    build_id: str,
    stages: Sequence[Stage],
) -> BuildReport:
    started_at = datetime.now(UTC)
    start = time.monotonic()
    records: list[StageRecord] = []
    failure: Failure | None = None
    exit_code = ExitCode.OK
    results: dict[type, object] = {}

    names = [stage.name for stage in stages]
    try:
        for index, stage in enumerate(stages):
            hit = results.get(ResultHit)
            passed_over = (
                f"reused build {hit.cached.document.get('build_id')}'s result"
                if hit is not None
                else f"the {failure.stage} stage failed"
                if failure is not None
                else None
            )
            if passed_over is not None:
                skipped = StageRecord(name=stage.name, status=StageStatus.SKIPPED, skip_reason=passed_over)
                records.append(skipped)
                sink(StageFinished(records[-1]))
                continue
            log = StageLog(stage.name, dirs.logs / f"{index:02d}-{stage.name}.log", sink)
            ctx = BuildContext(
                build_id, spec, settings, dirs, out_dir, start + settings.build_timeout, log, results, names
            )
            sink(StageStarted(stage.name))
            stage_start = time.monotonic()
            status, skip_reason = StageStatus.OK, None
            try:
                result = stage.run(ctx)
                if result is not None:
                    results[type(result)] = result
            except Skip as skip:
                status, skip_reason = StageStatus.SKIPPED, skip.reason
                log.line(f"skipped: {skip.reason}")
            except Exception as exc:  # every failure is classified, a bug included (as infrastructure)
                if not isinstance(exc, GocaasError):
                    log.line(traceback.format_exc())
                exc = stage_error(exc, stage.name, settings.home)
                limit_hit = results.get(LimitHit)
                exc = blame_limit(exc, limit_hit if isinstance(limit_hit, LimitHit) else None, stage.name)
                status = StageStatus.FAILED
                log.line(f"failed ({exc.failure_class}/{exc.kind}): {exc.message}")
                failure = Failure(
                    failure_class=exc.failure_class,
                    kind=exc.kind,
                    stage=stage.name,
                    message=exc.message,
                    diagnostics=list(exc.diagnostics),
                )
                exit_code = exc.exit_code
            finally:
                log.close()
            records.append(
                StageRecord(
                    name=stage.name,
                    status=status,
                    skip_reason=skip_reason,
                    duration_s=round(time.monotonic() - stage_start, 3),
                    log_path=str(log.path),
                    notes=log.notes,
                )
            )
            sink(StageFinished(records[-1]))
    finally:  # what the build left running in its cgroup ends with it
        limits = results.get(LimitsChoice)
        release(limits if isinstance(limits, LimitsChoice) else None)

    hit = results.get(ResultHit)
    if isinstance(hit, ResultHit):
        report = reused_report(
            hit,
            build_id=build_id,
            out_dir=out_dir,
            stages=records,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            duration_s=round(time.monotonic() - start, 3),
        )
    else:
        report = _report(build_id, spec, dirs, results, records, failure, exit_code, started_at, start)
        key = results.get(ResultKey)
        if failure is None and isinstance(key, ResultKey):
            try:
                remember(settings, key, report)
            except OSError as exc:  # a shortcut for the next identical build: this one succeeded anyway
                _warn(f"the result cache could not keep build {build_id}: {exc}")
    try:
        with replacing(dirs.root / "report.json") as path:
            path.write_text(report.to_json(), encoding="utf-8")
    except OSError as exc:  # the caller has the report; the copy on disk is for later commands
        _warn(f"cannot write {dirs.root / 'report.json'}: {exc}")
    return report


def _warn(message: str) -> None:
    """After the stages, when there is no stage log left to write to: the process's stderr (a terminal, the
    daemon's or the server's log)."""
    sys.stderr.write(f"gocaas: {message}\n")


def _report(
    build_id: str,
    spec: BuildSpec,
    dirs: BuildDirs,
    results: dict[type, object],
    records: list[StageRecord],
    failure: Failure | None,
    exit_code: int,
    started_at: datetime,
    start: float,
) -> BuildReport:
    source = results.get(SourceResult)
    toolchain = results.get(ToolchainResult)
    built = results.get(BuildResult)
    packaged = results.get(PackageResult)
    tested = results.get(TestStageResult)
    assert source is None or isinstance(source, SourceResult)
    assert toolchain is None or isinstance(toolchain, ToolchainResult)
    assert built is None or isinstance(built, BuildResult)
    assert packaged is None or isinstance(packaged, PackageResult)
    assert tested is None or isinstance(tested, TestStageResult)
    workspace = source.workspace if source else None
    sandbox = results.get(SandboxChoice)
    assert sandbox is None or isinstance(sandbox, SandboxChoice)
    return BuildReport(
        build_id=build_id,
        status=BuildStatus.FAILED if failure else BuildStatus.SUCCEEDED,
        exit_code=exit_code,
        source=SourceInfo(
            kind=spec.source.kind,
            location=spec.source.location,
            ref=spec.source.ref,
            digest=workspace.digest if workspace else None,
            file_count=workspace.file_count if workspace else None,
            commit=workspace.commit if workspace else None,
        ),
        go_version=str(toolchain.toolchain.version) if toolchain else None,
        toolchain_origin=toolchain.toolchain.origin if toolchain else None,
        version_stamp=built.version_stamp if built else None,
        targets=[str(t) for t in spec.options.targets],
        started_at=started_at,
        finished_at=datetime.now(UTC),
        duration_s=round(time.monotonic() - start, 3),
        stages=records,
        artifacts=list(packaged.artifacts) if packaged else [],
        checksums_file=str(packaged.checksums) if packaged else None,
        tests=tested.report if tested else None,
        cache=CacheUse(**tally([dirs.root / CACHE_STATS])),
        sandboxed=sandbox.bwrap is not None if sandbox else None,
        limits=_limits(results.get(LimitsChoice)),
        failure=failure,
    )


def _limits(choice: object) -> ResourceLimits | None:
    cgroup = choice.cgroup if isinstance(choice, LimitsChoice) else None
    if cgroup is None:
        return None
    return ResourceLimits(memory_bytes=cgroup.memory, pids=cgroup.pids, cgroup_version=cgroup.version)
