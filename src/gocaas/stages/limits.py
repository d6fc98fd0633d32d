"""A build's resource limits: the cgroup its go test commands run in (gocaas.go.cgroups), made once per
build, and what the build says when one of them reached a limit."""

from __future__ import annotations

from dataclasses import dataclass

from gocaas.errors import BadInput, GocaasError, InfraError, UserCodeError
from gocaas.go.cgroups import BuildCgroup, CgroupUnavailable, LimitCounters
from gocaas.pipeline.stage import BuildContext
from gocaas.resources import available_memory


@dataclass(frozen=True)
class LimitsChoice:
    """Published at a build's first go test: the cgroup its go test commands run in (None: none)."""

    cgroup: BuildCgroup | None


@dataclass(frozen=True)
class LimitHit:
    """Published when one of the build's go commands reached a limit; the failure of its stage says so."""

    stage: str
    kind: str  # "memory_limit" or "pids_limit"
    message: str


def _choose(ctx: BuildContext) -> LimitsChoice:
    settings = ctx.settings
    if settings.build_limits == "off":
        return LimitsChoice(None)
    memory = settings.effective_build_memory_limit()
    pids = settings.build_pids_limit or None
    if memory is None and pids is None:
        return LimitsChoice(None)
    try:
        cgroup = BuildCgroup.create(ctx.build_id, memory=memory, pids=pids)
    except CgroupUnavailable as e:
        if settings.build_limits == "on":
            why = f"build_limits is on, but this build cannot have its limits: {e}"
            raise InfraError(why, kind="limits") from None
        # A line of the log, not a note: on a laptop (not root, cgroup v2 without delegation) every build
        # would carry it. A service that must have limits sets build_limits = "on".
        ctx.log.line(f"go test commands run without resource limits: {e}")
        return LimitsChoice(None)
    ctx.log.line(f"go test commands run with {cgroup.describe()}")
    return LimitsChoice(cgroup)


def cgroup_for(ctx: BuildContext) -> BuildCgroup | None:
    """The cgroup of this build's go test commands: one for the whole build, made at its first."""
    return ctx.once(LimitsChoice, lambda: _choose(ctx)).cgroup


def build_memory(ctx: BuildContext) -> int:
    """The memory this build's go commands may use now: what is available, within the build's limit."""
    cgroup = cgroup_for(ctx)
    available = available_memory()
    return min(available, cgroup.memory) if cgroup is not None and cgroup.memory else available


def counters(cgroup: BuildCgroup | None) -> LimitCounters:
    return cgroup.counters() if cgroup is not None else LimitCounters()


def check_limits(ctx: BuildContext, cgroup: BuildCgroup | None, before: LimitCounters, what: str) -> None:
    """After a go command: if the build's cgroup enforced a limit since `before`, say so in the log and
    publish a LimitHit for the stage's failure."""
    if cgroup is None:
        return
    after = cgroup.counters()
    if after.oom_kills > before.oom_kills:
        kind = "memory_limit"
        message = (
            f"{what}: the kernel killed a process of this build for going over its memory limit "
            f"({cgroup.describe_memory()}; GOCAAS_BUILD_MEMORY_LIMIT)"
        )
    elif after.pids_refused > before.pids_refused:
        kind = "pids_limit"
        message = (
            f"{what}: this build reached its limit of {cgroup.pids} processes and threads, and the kernel "
            "refused it more (GOCAAS_BUILD_PIDS_LIMIT)"
        )
    else:
        return
    ctx.log.note(message)
    ctx.publish(LimitHit(ctx.log.stage, kind, message))


def blame_limit(exc: GocaasError, hit: LimitHit | None, stage: str) -> GocaasError:
    """The stage's failure, as the limit its go command reached if it did: the module's doing (it used more
    than the build may), named as such, whatever go then printed."""
    if hit is None or hit.stage != stage or isinstance(exc, BadInput):
        return exc
    return UserCodeError(f"{hit.message}. {exc.message}", kind=hit.kind, diagnostics=exc.diagnostics)


def release(choice: LimitsChoice | None) -> None:
    """At the end of the build: kill what it left running in its cgroup, and remove the cgroup."""
    if choice is not None and choice.cgroup is not None:
        choice.cgroup.close()
