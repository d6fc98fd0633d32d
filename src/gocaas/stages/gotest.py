"""One `go test -json` invocation: its arguments from typed options only, its event stream parsed as it
comes (each finished package goes to the live view), and what the go command said when nothing parsed."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gocaas.go.runner import CommandResult
from gocaas.go.testjson import PackageRun, TestStreamParser
from gocaas.pipeline.events import PackageTested
from gocaas.pipeline.stage import BuildContext
from gocaas.spec import TestOptions, TestTier
from gocaas.stages.gocmd import go


@dataclass(frozen=True)
class Invocation:
    """What varies between the main run and a re-run."""

    packages: tuple[str, ...]
    run: str | None = None
    count: int | None = None
    coverprofile: Path | None = None
    shuffle: str = "off"
    vetted: bool = False  # the vet stage already vetted these files: go test's own vet pass is redundant
    compile_flags: tuple[str, ...] = ()  # gocmd.host_checks_flags: fixed, never from a request


def go_test_args(options: TestOptions, tier: TestTier, p: int, parallel: int, call: Invocation) -> list[str]:
    """The argument list; every value is a validated field, and each is passed as `-flag=value` so that
    no value can ever be read as a flag of its own."""
    timeout = options.timeout or tier.timeout
    args = [
        "test",
        "-json",
        f"-p={tier.p or p}",
        f"-parallel={tier.parallel or parallel}",
        f"-timeout={max(1, int(timeout))}s",
    ]
    if call.shuffle != "off":
        args.append(f"-shuffle={call.shuffle}")  # any -shuffle, even =off, makes go skip its test cache
    if call.vetted:
        args.append("-vet=off")
    args += call.compile_flags
    if tier.tags:
        args.append("-tags=" + ",".join(tier.tags))
    if options.race:
        args.append("-race")
    if call.count is not None:
        args.append(f"-count={call.count}")
    if call.run is not None:
        args.append(f"-run={call.run}")
    if call.coverprofile is not None:
        args += [
            f"-coverprofile={call.coverprofile}",
            "-covermode=atomic" if options.race else "-covermode=set",
        ]
        if options.coverpkg_all:
            args.append("-coverpkg=./...")
    for package in call.packages:
        if package.startswith("-"):
            raise ValueError(f"refusing a package argument that looks like a flag: {package!r}")
    return [*args, *call.packages]


def run_go_test(
    ctx: BuildContext, args: Sequence[str], *, cgo: bool, timeout: float
) -> tuple[list[PackageRun], str, CommandResult]:
    """Run go test, streaming finished packages to the sink. Returns (packages, stray output, result)."""
    parsers = [TestStreamParser()]  # a new one when go() re-runs the command over a damaged cache
    sink_stage = ctx.log.stage

    def on_stdout(line: str) -> None:
        for run in parsers[-1].feed(line):
            passed = sum(t.status == "pass" for t in run.tests)
            failed = sum(t.status == "fail" for t in run.tests)
            skipped = sum(t.status == "skip" for t in run.tests)
            state = "none" if run.no_test_files else run.status
            ctx.log.event(
                PackageTested(
                    sink_stage, run.package, state, passed, failed, skipped, run.duration_s, run.cached
                )
            )

    result = go(
        ctx,
        args,
        check=False,
        cgo=cgo,
        on_stdout=on_stdout,
        on_retry=lambda: parsers.append(TestStreamParser()),
        timeout=timeout,
    )
    runs = parsers[-1].finish()
    return runs, parsers[-1].stray_output, result


GoTestOutcome = tuple[list[PackageRun], str, CommandResult]


def run_go_tests(
    ctx: BuildContext, arg_lists: Sequence[Sequence[str]], *, cgo: bool, timeout: float
) -> list[GoTestOutcome]:
    """The go test runs of one tier, at once; outcomes in order. There are two only under --shuffle auto
    after a change: the changed packages (shuffled: compiled and run) and the unchanged rest, which go's
    test cache answers. The second go command then loads packages and checks the cache while the first
    compiles, instead of after it: one package changed in a 100-package module, the two runs took 0.8 s one
    after the other and take 0.55 s at once. When go's cache cannot answer the rest (the last build shuffled
    them too), both run tests on the same CPUs at once: measured no slower than one after the other (5.3 s
    against 5.2-5.6 s), and it happens once per project."""
    if len(arg_lists) <= 1:
        return [run_go_test(ctx, args, cgo=cgo, timeout=timeout) for args in arg_lists]
    with ThreadPoolExecutor(max_workers=len(arg_lists), thread_name_prefix="go-test") as pool:
        futures = [pool.submit(run_go_test, ctx, args, cgo=cgo, timeout=timeout) for args in arg_lists]
        return [future.result() for future in futures]
