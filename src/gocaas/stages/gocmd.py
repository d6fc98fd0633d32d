"""How a stage runs a go command: the build's environment, its deadline, its log, and classification."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from gocaas.cache.attacher import find_attacher, resident_command
from gocaas.cache.command import go_quote
from gocaas.cache.options import TOKEN_ENV
from gocaas.cache.stats import STATS_ENV
from gocaas.cache.tally import record_bypass
from gocaas.errors import InfraError
from gocaas.go.env import go_environ
from gocaas.go.outside import HandoffUnavailable, cacheprog_outside, environ_inside
from gocaas.go.runner import CommandResult, LineSink, run_go
from gocaas.go.sandbox import Sandbox, choose, exec_only, find_bwrap, nested, python_paths
from gocaas.go.toolchain import Toolchain
from gocaas.go.version import GoVersion
from gocaas.pipeline.cachedamage import cacheprog_failure, damage_in, go_messages
from gocaas.pipeline.classify import classify
from gocaas.pipeline.stage import BuildContext
from gocaas.settings import Settings
from gocaas.source import Workspace
from gocaas.spec import BuildOptions, Target
from gocaas.stages.limits import cgroup_for, check_limits, counters


@dataclass(frozen=True)
class ToolchainResult:
    toolchain: Toolchain
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class SourceResult:
    workspace: Workspace
    # Files that differ from the previous build in this (stable) workspace; None: no previous build here.
    changed_since_last: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CacheDamage:
    """Published once a go command's failure pointed at a damaged cache (go() below): the rest of the build
    asks no remote cache, whose entries may be what was damaged."""

    evidence: str


@dataclass(frozen=True)
class CacheBypass:
    """Published once the cache program itself failed a go command (go() below): the rest of the build runs
    its go commands without it, on go's own cache (a private one in a read-only namespace)."""

    failure: str


CACHE_STATS = "cache-stats.jsonl"  # one line per go command: the cache program's counters
CACHEPROG_MIN = GoVersion.parse("1.24")  # GOCACHEPROG without GOEXPERIMENT
# What only the cache program reads: kept from a sandboxed go command, whose program runs outside.
PROGRAM_ONLY_ENV = (TOKEN_ENV, STATS_ENV)


def cacheprog_for(ctx: BuildContext, toolchain: Toolchain, *, refill: bool = False) -> list[str] | None:
    """The cache program of this build's go commands (its argument list): the shared store, in the
    settings' namespace; with refill, one that rebuilds every entry the command uses, and no remote."""
    settings = ctx.settings
    if not _cacheprog_usable(ctx, toolchain) or CacheBypass in ctx.results:
        return None
    from gocaas.cache.command import cacheprog_argv

    extra = ["--max-size", str(settings.cache_max_size), "--min-free", settings.cache_min_free]
    if refill:
        extra.append("--refill")
    elif settings.cache_remote_url and CacheDamage not in ctx.results:
        extra += [
            "--remote",
            settings.cache_remote_url,
            "--remote-timeout",
            str(settings.cache_remote_timeout),
        ]
        if settings.cache_remote_read_only:
            extra.append("--remote-read-only")
        if not settings.cache_remote_prefetch:
            extra.append("--no-prefetch")
        if settings.cache_remote_signing_key_file is not None:
            extra += ["--signing-key-file", str(settings.cache_remote_signing_key_file)]
        for key in settings.cache_remote_verify_keys:
            extra += ["--verify-key", key]
    if not refill and (runtime := resident_runtime_dir(settings)):
        extra += ["--resident", "--runtime-dir", runtime]
        extra += ["--resident-idle", str(settings.cache_resident_idle)]
    return cacheprog_argv(
        settings.cache_dir,
        namespace=settings.cache_namespace,
        read_only=settings.cache_read_only,
        extra=extra,
    )


def resident_runtime_dir(settings: Settings) -> str | None:
    """Where the resident cache program's socket goes, when the settings want one (cache_resident)."""
    from gocaas.daemon.identity import on_ci, runtime_dir

    wanted = settings.cache_resident
    if wanted == "off" or (wanted == "auto" and on_ci(os.environ)):
        return None
    return runtime_dir(os.environ)


@dataclass(frozen=True)
class AttacherChoice:
    """Published at a build's first go command with a cache program: the compiled attacher its go commands
    start to reach a running cache program (gocaas.cache.attacher); None: Python's handoff."""

    path: Path | None


def attacher_for(ctx: BuildContext, toolchain: Toolchain) -> Path | None:
    """The compiled attacher of this build's go commands: one choice for the whole build."""

    def choose() -> AttacherChoice:
        settings = ctx.settings
        if not settings.cache_attacher:
            return AttacherChoice(None)
        found = find_attacher(settings.helpers_dir, toolchain.go, settings.gocache)
        if found is not None:
            ctx.log.line(f"go commands reach their cache program through {found}")
        return AttacherChoice(found)

    return ctx.once(AttacherChoice, choose).path


def direct_gocacheprog(
    ctx: BuildContext, toolchain: Toolchain, program: list[str], env: dict[str, str]
) -> str:
    """GOCACHEPROG of an unsandboxed go command whose cache program is `program`: through the attacher
    when the program is --resident (it hands the go command over; a program that serves it needs Python)."""
    attacher = attacher_for(ctx, toolchain) if "--resident" in program else None
    if attacher is not None:
        try:
            return go_quote(resident_command(attacher, program, env))
        except OSError as e:  # the key file: the runtime directory went away, or is full
            ctx.log.line(f"cache program: starting Python's, not the attacher ({e})")
    return go_quote(program)


def _cacheprog_usable(ctx: BuildContext, toolchain: Toolchain) -> bool:
    return ctx.settings.cacheprog and toolchain.version >= CACHEPROG_MIN


def gocache_for(ctx: BuildContext, toolchain: Toolchain) -> Path:
    """The GOCACHE of this build's go commands. With a cache program it holds only what go keeps beside the
    build cache (a fuzzing corpus), but go still writes it at start, so it must be writable: a build in a
    read-only namespace gets a private one, so that its tests cannot write into the shared one (which is
    the build cache itself for a toolchain too old for GOCACHEPROG, or once the cache program failed)."""
    if ctx.settings.cache_read_only and _cacheprog_usable(ctx, toolchain):
        return ctx.dirs.home / ".cache" / "go-build"
    return ctx.settings.gocache


@dataclass(frozen=True)
class SandboxChoice:
    """Published at a build's first sandboxed go command: the bwrap its go commands run under (None: none)."""

    bwrap: Path | None


def _choose_sandbox(ctx: BuildContext) -> SandboxChoice:
    """At a build's first sandboxed go command: whether it has a sandbox, said in its log or notes."""
    settings = ctx.settings
    bwrap, why_not = choose(settings.sandbox, find_bwrap(settings.sandbox_bwrap, settings.system_path))
    if why_not:
        ctx.log.note(
            f"not sandboxed: {why_not}. The module's tests can write the data directory (the build cache "
            "included) with gocaas's own access (GOCAAS_SANDBOX=off: run unsandboxed without this note)."
        )
    elif bwrap is not None:
        net = "with" if settings.sandbox_network else "without"
        ctx.log.line(f"go commands run in a bubblewrap sandbox ({bwrap}), {net} the network")
    return SandboxChoice(bwrap)


def sandbox_for(ctx: BuildContext, toolchain: Toolchain, writable: Sequence[Path] = ()) -> Sandbox | None:
    """The sandbox of one of this build's go commands (gocaas.go.sandbox), None when builds run without one.
    writable: what this command writes beyond the build's own directories (a build stage's output)."""
    settings = ctx.settings
    choice = ctx.once(SandboxChoice, lambda: _choose_sandbox(ctx))
    if choice.bwrap is None:
        return None
    dirs = ctx.dirs
    # The cache program runs outside (gocaas.go.outside): the store is only read in here, by the go command.
    readable = [toolchain.goroot, toolchain.go.parent, settings.gomodcache]
    rw = [dirs.src, dirs.home, dirs.tmp, dirs.gopath, dirs.bin, gocache_for(ctx, toolchain), *writable]
    if cacheprog_for(ctx, toolchain) is not None:
        attacher = attacher_for(ctx, toolchain)  # what the go command starts: the attacher, else Python
        readable += [attacher] if attacher else python_paths()
        readable.append(settings.cache_dir)  # the objects go reads
    for path in (settings.gomodcache, settings.cache_dir, *rw):
        path.mkdir(parents=True, exist_ok=True)
    go = toolchain.go.resolve()
    try:  # so that the tests cannot open the go command's pipes to the cache program (sandbox.exec_only)
        go_exec_only = exec_only(go, settings.home / "sandbox")
    except OSError as e:
        raise InfraError(f"cannot prepare the sandbox's copy of {go}: {e}", kind="sandbox") from e
    # Where the go command is run from, and where that leads: a toolchain under a symlinked directory is
    # bound at the symlink's path, which is the one run.
    shown_at = {toolchain.go.absolute(), go}
    if not os.access(go_exec_only, os.X_OK):  # a data directory mounted noexec: run go as it is
        ctx.log.line(f"{go_exec_only} cannot be executed (noexec?): go runs from its readable binary")
        shown_at = set()
    return Sandbox(
        choice.bwrap,
        nested(readable),
        nested(rw),
        network=settings.sandbox_network,
        replaced=tuple((go_exec_only, path) for path in sorted(shown_at)),
    )


# The compiler's DWARF is only worth its cost (~8% of a cold `go test ./...` here, a quarter of the cache's
# bytes) to a link that keeps it. go test links test binaries with -s -w and go vet links nothing, so vet
# and test compile without it — unless this build's build stage links the host target with debug info:
# then it reuses what vet and test compiled, which it can only if they compiled it the same way.
NO_DWARF = "-gcflags=all=-dwarf=false"


def host_checks_keep_dwarf(stage_names: Sequence[str], options: BuildOptions) -> bool:
    """Whether vet and test compile with DWARF: only to share their compiled packages with a build stage
    that links the host target unstripped."""
    return "build" in stage_names and not options.strip and Target.host() in options.targets


def host_checks_flags(ctx: BuildContext) -> list[str]:
    """Flags of this build's vet and test go commands (a flaky re-run's too: it reuses their compiles)."""
    return [] if host_checks_keep_dwarf(ctx.stage_names, ctx.spec.options) else [NO_DWARF]


def build_flags(options: BuildOptions) -> list[str]:
    """Compile flags of the build stage: a stripped link (-s -w) throws DWARF away, so none is made."""
    return [NO_DWARF] if options.strip else []


# After the modules stage nothing may download behind its back (and go.mod/go.sum stay as they are).
OFFLINE_GOFLAGS = ("-mod=readonly",)


def go(
    ctx: BuildContext,
    args: Sequence[str],
    *,
    target: Target | None = None,
    goflags: Sequence[str] = OFFLINE_GOFLAGS,
    goproxy: str | None = "off",
    gosumdb: str | None = None,
    cwd: Path | None = None,
    check: bool = True,
    cgo: bool | None = None,
    on_stdout: LineSink | None = None,
    on_retry: Callable[[], None] | None = None,
    timeout: float | None = None,
    sandboxed: bool = True,
    writable: Sequence[Path] = (),
) -> CommandResult:
    """Run one go command for this build; a failure raises the classified GocaasError (check=True).

    Unless sandboxed=False (the modules stage: no module code runs, and it downloads into the module cache),
    the command runs in the build's sandbox, where it may write the build's directories and `writable`.

    A failure that points at a damaged cache (cachedamage.py) runs the command once more with every cache
    entry it uses rebuilt and no remote cache (for the rest of the build too); one that the cache program
    itself caused runs it once more without the cache program (for the rest of the build too): a cache must
    never fail a build. on_retry is called before that second run (a stream parser starts over)."""
    toolchain = ctx.need(ToolchainResult).toolchain
    root = ctx.need(SourceResult).workspace.root
    prefix = f"[{target}] " if target is not None else ""
    sandbox = sandbox_for(ctx, toolchain, (root, *writable)) if sandboxed else None
    # Only go test runs the module's code (vet, list and build run go's own tools on it), and moving a
    # command into a cgroup costs one RCU grace period of the kernel here (~15-25 ms): only go test pays it.
    cgroup = cgroup_for(ctx) if sandboxed and args[:1] == ["test"] else None

    def attempt(*, refill: bool) -> CommandResult:
        program = cacheprog_for(ctx, toolchain, refill=refill)
        env = go_environ(
            ctx.settings,
            toolchain.goroot,
            ctx.dirs,
            target=target,
            cgo=ctx.spec.options.cgo if cgo is None else cgo,
            goflags=goflags,
            goproxy=goproxy,
            gosumdb=gosumdb,
            gocache=gocache_for(ctx, toolchain),
            cacheprog=go_quote(program) if program is not None else None,
            cache_stats=ctx.dirs.root / CACHE_STATS,
        )
        ctx.log.line(f"{prefix}$ go {' '.join(args)}")

        def run(env: dict[str, str], sandbox: Sandbox | None) -> CommandResult:
            before = counters(cgroup)
            try:
                return run_go(
                    toolchain.go,
                    args,
                    env=env,
                    cwd=cwd or root,
                    timeout=min(ctx.remaining(), timeout) if timeout else ctx.remaining(),
                    on_line=lambda line: ctx.log.line(prefix + line),
                    on_stdout=on_stdout,
                    sandbox=sandbox,
                    cgroup=cgroup,
                )
            finally:
                check_limits(ctx, cgroup, before, f"{prefix}go {' '.join(args[:1])}")

        if program is None:
            return run(env, sandbox)
        if sandbox is None:
            return run({**env, "GOCACHEPROG": direct_gocacheprog(ctx, toolchain, program, env)}, None)
        said = lambda text: ctx.log.line(f"{prefix}cache program: {text}")  # noqa: E731
        try:
            attacher = attacher_for(ctx, toolchain)
            with cacheprog_outside(program, env, said, attacher=attacher) as handoff:
                inside = environ_inside(env, handoff, hidden=PROGRAM_ONLY_ENV)
                return run(inside, replace(sandbox, readable=(*sandbox.readable, handoff.directory)))
        except HandoffUnavailable as e:
            bypass(f"could not start the build cache program ({e})", "Running it")
            return attempt(refill=refill)  # without it, now

    def bypass(why: str, then: str = "Running it again") -> None:
        ctx.publish(CacheBypass(why))
        record_bypass(ctx.dirs.root / CACHE_STATS)
        ctx.log.note(
            f"{prefix}go {' '.join(args[:1])} {why}. {then}, and the rest of this build's go commands, "
            "without the shared build cache."
        )

    result = attempt(refill=False)
    failure = evidence = None
    if not result.ok and cacheprog_for(ctx, toolchain) is not None:
        failure = cacheprog_failure(go_messages(result))
        evidence = (
            None
            if failure
            else damage_in(
                result,
                module_root=root,
                cwd=cwd or root,
                goroot=toolchain.goroot,
                cache_dir=ctx.settings.cache_dir,
            )
        )
    if failure:
        bypass(f"failed because the build cache program failed ({failure})")
    elif evidence:
        ctx.publish(CacheDamage(evidence))
        ctx.log.note(
            f"{prefix}go {' '.join(args[:1])} failed and {evidence}: a damaged build cache, not the "
            "module's code. Running it again with every cache entry it uses rebuilt, and without the "
            "remote cache for the rest of this build."
        )
    if failure or evidence:
        if on_retry is not None:
            on_retry()
        result = attempt(refill=evidence is not None)
    if check and not result.ok:
        raise classify(
            result,
            stage=ctx.log.stage,
            module_root=root,
            cwd=cwd or root,
            goroot=toolchain.goroot,
            cache_dir=ctx.settings.cache_dir,
        )
    return result
