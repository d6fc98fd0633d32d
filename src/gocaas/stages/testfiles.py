"""The test stage's helpers that are not about running go test: which packages to run (--changed-since),
the coverage report, the summary, and the flaky history in the store."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gocaas.go.affected import affected_packages, go_list_args, parse_go_list_json
from gocaas.go.env import go_environ
from gocaas.go.gomod import module_path
from gocaas.pipeline.stage import BuildContext
from gocaas.report.coverage import (
    coverage_percentages,
    merge_profiles,
    parse_profile,
    render_html,
    write_profile,
)
from gocaas.report.tests import (
    CoverageReport,
    PackageResult,
    PackageState,
    SkippedPackage,
    SlowTest,
    TestResult,
    TestState,
    TestSummary,
)
from gocaas.source import Workspace
from gocaas.stages.gocmd import SourceResult, ToolchainResult, go

if TYPE_CHECKING:
    from gocaas.store import Store

COVERAGE_PROFILE = "coverage.out"
COVERAGE_HTML = "coverage.html"
SLOWEST = 10


@dataclass(frozen=True)
class PackagePlan:
    """Which packages run, and which of them are shuffled."""

    selected: tuple[str, ...] | None  # --changed-since's selection; None: each tier's own patterns
    not_run: list[SkippedPackage]
    shuffled: frozenset[str] | None  # --shuffle auto: the packages to shuffle; None: the option decides
    module_packages: tuple[str, ...]  # the module's packages, when go list was asked


def plan_packages(
    ctx: BuildContext, workspace: Workspace, changed_since_last: tuple[str, ...] | None, shuffle: str
) -> PackagePlan:
    """--changed-since: the module's packages whose files or dependencies changed since REF, and why the
    others are left out. --shuffle auto: the packages affected by what changed since the last build in this
    workspace are shuffled; the unchanged rest run unshuffled, so that go's test cache answers for them (go
    never caches a shuffled run). Asks `go list -deps -test` only when one of them needs it."""
    since = ctx.spec.source.changed_since
    by_since = since is not None and workspace.changed_files is not None
    by_change = shuffle == "auto" and bool(changed_since_last)
    if not (by_since or by_change):
        nothing_changed = shuffle == "auto" and changed_since_last is not None
        return PackagePlan(None, [], frozenset() if nothing_changed else None, ())
    entries = parse_go_list_json(go(ctx, go_list_args()).stdout)
    module = module_path(workspace.root)
    selected: tuple[str, ...] | None = None
    not_run: list[SkippedPackage] = []
    if by_since:
        assert since is not None and workspace.changed_files is not None
        chosen, skipped = affected_packages(
            entries, workspace.changed_files, module, workspace.root, since=since, log=ctx.log.line
        )
        ctx.log.note(
            f"--changed-since {since}: {len(workspace.changed_files)} files changed, "
            f"{len(chosen)} packages to test, {len(skipped)} left out"
        )
        selected = tuple(chosen)
        not_run = [
            SkippedPackage(package=package, reason=reason) for package, reason in sorted(skipped.items())
        ]
    shuffled: frozenset[str] | None = None
    if shuffle == "auto":
        if changed_since_last is None:
            shuffled = None
        else:
            affected, _ = affected_packages(
                entries, changed_since_last, module, workspace.root, since="the last build"
            )
            shuffled = frozenset(affected)
    packages = tuple(
        sorted(
            {
                e["ImportPath"]
                for e in entries
                if not e.get("DepOnly")
                and not e.get("ForTest")
                and (e.get("Module") or {}).get("Path") == module
                and not str(e.get("ImportPath", "")).endswith(".test")
            }
        )
    )
    return PackagePlan(selected, not_run, shuffled, packages)


def coverage_report(ctx: BuildContext, profiles: list[Path]) -> CoverageReport:
    """One merged profile from every tier, percentages, and go tool cover's HTML, in the output directory."""
    out = ctx.out_dir
    out.mkdir(parents=True, exist_ok=True)
    merged = (
        merge_profiles(parse_profile(p.read_text(encoding="utf-8")) for p in profiles) if profiles else None
    )
    if merged is None:
        return CoverageReport(total_percent=0.0, packages={})
    profile_path = out / COVERAGE_PROFILE
    write_profile(merged, profile_path)
    total, per_package = coverage_percentages(merged)
    html = out / COVERAGE_HTML
    toolchain = ctx.need(ToolchainResult).toolchain
    env = go_environ(ctx.settings, toolchain.goroot, ctx.dirs, goflags=("-mod=readonly",), goproxy="off")
    root = ctx.need(SourceResult).workspace.root
    render_html(toolchain.go, env, root, profile_path, html, timeout=min(300.0, ctx.remaining()))
    ctx.log.line(f"coverage {total:.1f}% over {len(per_package)} packages")
    return CoverageReport(
        total_percent=total, packages=per_package, profile_path=str(profile_path), html_path=str(html)
    )


def summarize(
    packages: list[PackageResult], tests: list[TestResult], not_run: list[SkippedPackage]
) -> TestSummary:
    counts = {state: sum(t.state is state for t in tests) for state in TestState}
    top = sorted((t for t in tests if "/" not in t.name), key=lambda t: t.duration_s, reverse=True)[:SLOWEST]
    return TestSummary(
        total=len(tests),
        passed=counts[TestState.PASSED],
        failed=counts[TestState.FAILED],
        skipped=counts[TestState.SKIPPED],
        flaky=counts[TestState.FLAKY],
        quarantined_failures=sum(t.state is TestState.FAILED and t.quarantined for t in tests),
        packages_without_tests=[p.package for p in packages if p.state is PackageState.NO_TESTS],
        slowest=[SlowTest(package=t.package, name=t.name, duration_s=t.duration_s) for t in top],
        failures=[t for t in tests if t.state is TestState.FAILED],
        not_run=not_run,
    )


class History:
    """The flaky history: runs, failures and flakes per test across builds. Its store is opened in the
    background as soon as the stage starts (importing SQLAlchemy and checking the schema cost about as much
    as a warm `go test` of a small module), so recording at the end waits for nothing. The history is a
    convenience: a store that cannot be reached is said in the log, and never fails the build."""

    def __init__(self, url: str) -> None:
        pool = ThreadPoolExecutor(1, thread_name_prefix="gocaas-history")
        self._store: Future[Store] = pool.submit(_open_store, url)
        pool.shutdown(wait=False)

    def record(self, ctx: BuildContext, module: str, tests: list[TestResult]) -> None:
        from gocaas.store import StoreUnavailable, TestHistoryRepo, TestOutcome

        outcomes = [
            TestOutcome(
                t.package, t.name, failed=t.state is TestState.FAILED, flaky=t.state is TestState.FLAKY
            )
            for t in tests
            if t.state is not TestState.SKIPPED
        ]
        if not outcomes:
            return
        try:
            TestHistoryRepo(self._store.result()).record(module, outcomes)
        except StoreUnavailable as exc:
            ctx.log.line(f"flaky history not recorded: {exc.message}")

    def close(self) -> None:
        with contextlib.suppress(Exception):  # opening failed: record() said so, if it ran
            self._store.result().close()


def _open_store(url: str) -> Store:
    from gocaas.store import open_store  # SQLAlchemy: lazily, off the critical path

    return open_store(url)
