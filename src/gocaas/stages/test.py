"""Stage: go test — per-test results, JUnit, coverage, flaky re-runs, quarantine, shuffle, tiers, affected
packages. Between vet and build in `gocaas build`; alone in `gocaas test`."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from gocaas.errors import BadInput, UserCodeError
from gocaas.go.diagnostics import parse_diagnostics
from gocaas.go.gomod import module_path
from gocaas.go.testjson import PackageRun, to_results
from gocaas.pipeline.cachedamage import damage_in
from gocaas.pipeline.classify import classify
from gocaas.pipeline.stage import BuildContext, Skip
from gocaas.quarantine import Quarantine
from gocaas.quarantine import load as load_quarantine
from gocaas.report.junit import write_junit
from gocaas.report.tests import (
    PackageResult,
    PackageState,
    SkippedPackage,
    TestReport,
    TestResult,
    TestState,
)
from gocaas.resources import plan_test_parallelism
from gocaas.source import Workspace
from gocaas.spec import FlakyPolicy, TestTier
from gocaas.stages.gocmd import SourceResult, ToolchainResult, host_checks_flags
from gocaas.stages.gotest import Invocation, go_test_args, run_go_test, run_go_tests
from gocaas.stages.limits import LimitHit, build_memory
from gocaas.stages.reruns import failed_top_level, rerun_failures
from gocaas.stages.results import TestStageResult
from gocaas.stages.testfiles import History, PackagePlan, coverage_report, plan_packages, summarize

JUNIT_NAME = "junit.xml"
# What the testing package prints, then exits 1, for a flag value it cannot use (-run, -skip, ...).
_REFUSED_FLAG = re.compile(r"^testing: invalid regexp for .*$", re.MULTILINE)


def vetted(ctx: BuildContext, tier: TestTier) -> bool:
    """Whether this build's vet stage already ran `go vet ./...` over what this tier's go test compiles:
    then go test's own (smaller) vet pass is work done twice. Not for tiers with build tags (other files)
    or -race (cgo turned on: other files again)."""
    return (
        "vet" in ctx.stage_names
        and ctx.spec.options.vet
        and not tier.tags
        and not ctx.spec.options.tests.race
    )


def select_tiers(configured: tuple[TestTier, ...], wanted: tuple[str, ...]) -> list[TestTier]:
    if not wanted:
        return [tier for tier in configured if tier.default]
    by_name = {tier.name: tier for tier in configured}
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise BadInput(
            f"unknown test tier {', '.join(unknown)}; configured: {', '.join(by_name) or 'none'}",
            kind="bad_input",
        )
    return [by_name[name] for name in wanted]


def require_c_compiler(path: str) -> None:
    if not any(shutil.which(cc, path=path) for cc in ("gcc", "clang", "cc")):
        raise BadInput(
            f"--race needs cgo and a C compiler (gcc or clang), and there is none on {path}",
            kind="no_c_compiler",
        )


class TestStage:
    name: ClassVar[str] = "test"

    def run(self, ctx: BuildContext) -> TestStageResult:
        options = ctx.spec.options.tests
        if not options.enabled:
            raise Skip("turned off (--no-test)")
        workspace = ctx.need(SourceResult).workspace
        quarantine = load_quarantine(workspace.root)
        tiers = select_tiers(ctx.settings.test_tiers, options.tiers)
        if options.race:
            require_c_compiler(ctx.settings.system_path)
        cgo = ctx.spec.options.cgo or options.race
        history = History(ctx.settings.db_url)
        try:
            return self._run(ctx, workspace, quarantine, tiers, cgo, history)
        finally:
            history.close()

    def _run(
        self,
        ctx: BuildContext,
        workspace: Workspace,
        quarantine: Quarantine,
        tiers: Sequence[TestTier],
        cgo: bool,
        history: History,
    ) -> TestStageResult:
        options = ctx.spec.options.tests
        changed_since_last = ctx.need(SourceResult).changed_since_last
        plan = plan_packages(ctx, workspace, changed_since_last, options.shuffle)
        selected, not_run = plan.selected, list(plan.not_run)
        module = module_path(workspace.root)
        memory = build_memory(ctx)
        p, parallel = plan_test_parallelism(ctx.settings.effective_cores(), memory)
        ctx.log.line(
            f"go test -p {p} -parallel {parallel} ({ctx.settings.effective_cores()} CPUs, "
            f"{memory // 2**20} MiB available), tiers: {', '.join(t.name for t in tiers)}"
        )
        if selected is not None:
            unclaimed = [pkg for pkg in selected if not any(in_tier(pkg, t, module) for t in tiers)]
            not_run += [
                SkippedPackage(package=pkg, reason="in none of the tiers that ran") for pkg in unclaimed
            ]
        profiles = []
        shuffled_count = unshuffled_count = 0
        by_tier: list[tuple[TestTier, list[PackageResult], list[TestResult]]] = []
        for tier in tiers:
            runs: list[PackageRun] = []
            groups = shuffle_groups(plan, tier, module, options.shuffle)
            cover_dir = ctx.dirs.tmp if options.coverage else None
            compile_flags = tuple(host_checks_flags(ctx))
            calls = [
                Invocation(
                    packages=packages,
                    count=options.count,
                    run=options.run,
                    coverprofile=cover_dir / f"cover-{tier.name}-{number}.out" if cover_dir else None,
                    shuffle=shuffle,
                    vetted=vetted(ctx, tier),
                    compile_flags=compile_flags,
                )
                for number, (packages, shuffle) in enumerate(groups)
            ]
            outcomes = run_go_tests(
                ctx,
                [go_test_args(options, tier, p, parallel, call) for call in calls],
                cgo=cgo,
                timeout=tier.timeout + 60,
            )
            for call, (group_runs, stray, result) in zip(calls, outcomes, strict=True):
                where = {
                    "module_root": workspace.root,
                    "cwd": workspace.root,
                    "goroot": ctx.need(ToolchainResult).toolchain.goroot,
                    "cache_dir": ctx.settings.cache_dir,
                }
                if not result.ok and (not group_runs or damage_in(result, **where)):
                    # go test failed before running anything (go.mod, a compile error outside tests, ...),
                    # or its packages failed to build over a damaged cache even after gocmd.go's re-run
                    raise classify(result, stage="test", **where)
                if stray.strip():
                    ctx.log.line(stray.rstrip())
                if call.coverprofile is not None and call.coverprofile.exists():
                    profiles.append(call.coverprofile)
                runs += group_runs
                if call.shuffle == "off":
                    unshuffled_count += len(group_runs)
                else:
                    shuffled_count += len(group_runs)
            if runs:
                tier_packages, tier_tests = to_results(runs)
                by_tier.append((tier, tier_packages, mark_quarantined(tier_tests, quarantine)))

        total_failing = sum(
            len(names) for _, _, tests in by_tier for names in failed_top_level(tests).values()
        )
        if total_failing and options.reruns:
            if total_failing > options.rerun_threshold:
                ctx.log.note(
                    f"{total_failing} tests failed, more than {options.rerun_threshold}: not re-run "
                    "(a broken build, not flakiness)"
                )
            elif (hit := ctx.results.get(LimitHit)) is not None:
                ctx.log.line(f"failed tests not re-run: the build reached its {hit.kind.replace('_', ' ')}")
            else:
                for index, (tier, tier_packages, tier_tests) in enumerate(by_tier):
                    rerun, invocations = rerun_failures(
                        tier_tests,
                        options.reruns,
                        lambda pkg, names, tier=tier: self._run_alone(
                            ctx, tier, p, parallel, pkg, names, cgo
                        ),
                    )
                    by_tier[index] = (tier, tier_packages, rerun)
                    if invocations:
                        ctx.log.line(f"re-ran failed tests of tier {tier.name} in {invocations} go test runs")
        tests = [t for _, _, tier_tests in by_tier for t in tier_tests]
        package_results = _clear_flaky_packages([pkg for _, pkgs, _ in by_tier for pkg in pkgs], tests)

        coverage = coverage_report(ctx, profiles) if options.coverage else None
        if coverage is not None:
            package_results = [
                p.model_copy(update={"coverage_percent": coverage.packages.get(p.package)})
                for p in package_results
            ]
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        toolchain = ctx.need(ToolchainResult).toolchain
        junit = write_junit(
            ctx.out_dir / JUNIT_NAME,
            package_results,
            tests,
            properties={"go.version": str(toolchain.version), "build.id": ctx.build_id},
        )
        report = TestReport(
            summary=summarize(package_results, tests, not_run),
            packages=package_results,
            tests=tests,
            coverage=coverage,
            junit_path=str(junit),
            shuffle=describe_shuffle(options.shuffle, shuffled_count, unshuffled_count),
        )
        ctx.publish(TestStageResult(report))
        history.record(ctx, module_path(workspace.root), tests)
        self._verdict(report, options.flaky, workspace.root)
        return TestStageResult(report)

    @staticmethod
    def _run_alone(
        ctx: BuildContext, tier: TestTier, p: int, parallel: int, package: str, names: list[str], cgo: bool
    ) -> list[PackageRun]:
        options = ctx.spec.options.tests
        call = Invocation(
            packages=(package,),
            run="^(" + "|".join(names) + ")$",
            count=1,
            shuffle="off" if options.shuffle == "auto" else options.shuffle,
            vetted=vetted(ctx, tier),
            compile_flags=tuple(host_checks_flags(ctx)),
        )
        runs, _, _ = run_go_test(
            ctx, go_test_args(options, tier, p, parallel, call), cgo=cgo, timeout=tier.timeout + 60
        )
        return runs

    @staticmethod
    def _verdict(report: TestReport, flaky: FlakyPolicy, root: Path) -> None:
        summary = report.summary
        broken = [
            p
            for p in report.packages
            if p.state is PackageState.FAILED and p.failure_kind in ("build_failed", "testmain_exit")
        ]
        if broken:
            package = broken[0]
            if package.failure_kind == "testmain_exit":
                if refused := _REFUSED_FLAG.search(package.output):  # e.g. --run "[": the flag, not the code
                    raise BadInput(f"the test binary refused a flag: {refused.group(0)}", kind="bad_flag")
                raise UserCodeError(
                    f"{package.package} has a TestMain that exited non-zero:\n{package.output[-2000:]}",
                    kind="testmain_failed",
                )
            diagnostics = parse_diagnostics(package.output, root)
            # A compile error in the package itself is a compile error; one only in its tests is a test's.
            in_tests = bool(diagnostics) and all(d.file.endswith("_test.go") for d in diagnostics)
            what = "does not compile its tests" if in_tests else "does not compile"
            raise UserCodeError(
                f"{package.package} {what}:\n{package.output[-2000:]}",
                kind="test_build_failed" if in_tests else "compile_error",
                diagnostics=diagnostics,
            )
        blocking = [t for t in report.tests if t.state is TestState.FAILED and not t.quarantined]
        unnamed = [
            p
            for p in report.packages
            if p.state is PackageState.FAILED
            and not any(t.package == p.package and t.state is TestState.FAILED for t in report.tests)
        ]
        if blocking or unnamed:
            kinds = {t.failure_kind for t in blocking} | {p.failure_kind for p in unnamed}
            kind = (
                "test_timeout" if "timeout" in kinds else "test_panic" if "panic" in kinds else "test_failed"
            )
            names = [f"{t.package} {t.name} ({t.failure_kind})" for t in blocking if "/" not in t.name]
            names += [f"{p.package} ({p.failure_kind})" for p in unnamed]
            raise UserCodeError(f"{summary.failed} tests failed: " + "; ".join(names[:20]), kind=kind)
        flaky_tests = [t for t in report.tests if t.state is TestState.FLAKY and not t.quarantined]
        if flaky is FlakyPolicy.FAIL and flaky_tests:
            names = ", ".join(f"{t.package} {t.name}" for t in flaky_tests[:10])
            raise UserCodeError(f"{len(flaky_tests)} flaky tests (--flaky=fail): {names}", kind="flaky_test")


def shuffle_groups(
    plan: PackagePlan, tier: TestTier, module: str, shuffle: str
) -> list[tuple[tuple[str, ...], str]]:
    """The go test runs of one tier: (packages, -shuffle value), one run unless --shuffle auto splits it."""
    patterns = (
        tier.packages
        if plan.selected is None
        else tuple(pkg for pkg in plan.selected if in_tier(pkg, tier, module))
    )
    if not patterns:
        return []
    if shuffle != "auto":
        return [(patterns, shuffle)]
    if plan.shuffled is None:
        return [(patterns, "on")]  # no earlier build here: everything is new
    if not plan.shuffled:
        return [(patterns, "off")]  # nothing changed: go's test cache answers
    explicit = [pkg for pkg in (plan.selected or plan.module_packages) if in_tier(pkg, tier, module)]
    changed = tuple(pkg for pkg in explicit if pkg in plan.shuffled)
    unchanged = tuple(pkg for pkg in explicit if pkg not in plan.shuffled)
    return [(group, mode) for group, mode in ((changed, "on"), (unchanged, "off")) if group]


def describe_shuffle(option: str, shuffled: int, unshuffled: int) -> str:
    if option != "auto":
        return option
    return (
        f"auto: {shuffled} packages shuffled (new or changed since the last build), {unshuffled} not "
        "(unchanged: go's test cache applies)"
    )


def in_tier(package: str, tier: TestTier, module: str) -> bool:
    """Whether an import path of the module falls under one of the tier's patterns (./..., ./x/..., ./x)."""
    for pattern in tier.packages:
        rel = pattern.removeprefix("./").rstrip("/")
        if rel in ("...", ""):
            if rel == "..." or package == module:
                return True
            continue
        if rel.endswith("/..."):
            base = f"{module}/{rel.removesuffix('/...')}"
            if package == base or package.startswith(base + "/"):
                return True
        elif package == f"{module}/{rel}":
            return True
    return False


def mark_quarantined(tests: list[TestResult], quarantine: Quarantine) -> list[TestResult]:
    """Flag failed tests the quarantine list covers. A parent fails whenever a subtest does, so a parent
    whose failed subtests are all quarantined is covered too (go does not say whether it also failed on
    its own)."""
    marked = [
        t.model_copy(update={"quarantined": quarantine.matches(t.package, t.name)})
        if t.state is TestState.FAILED
        else t
        for t in tests
    ]
    result = []
    for test in marked:
        if test.state is TestState.FAILED and not test.quarantined:
            children = [
                c
                for c in marked
                if c.package == test.package
                and c.name.startswith(test.name + "/")
                and c.state is TestState.FAILED
            ]
            if children and all(c.quarantined for c in children):
                test = test.model_copy(update={"quarantined": True})
        result.append(test)
    return result


def _clear_flaky_packages(packages: list[PackageResult], tests: list[TestResult]) -> list[PackageResult]:
    """A package whose every failure turned out flaky passed after all."""
    cleared = []
    for package in packages:
        mine = [t for t in tests if t.package == package.package]
        if (
            package.state is PackageState.FAILED
            and package.failure_kind in ("failed", "panic")
            and any(t.state is TestState.FLAKY for t in mine)
            and not any(t.state is TestState.FAILED for t in mine)
        ):
            package = package.model_copy(update={"state": PackageState.PASSED, "failure_kind": None})
        cleared.append(package)
    return cleared
