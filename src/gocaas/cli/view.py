"""Watching a build: a live Rich view on a terminal, plain lines otherwise. Both are just event sinks."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gocaas.pipeline.events import (
    Event,
    LogLine,
    Note,
    PackageTested,
    StageFinished,
    StageStarted,
    TargetFinished,
    TargetStarted,
)
from gocaas.report.model import BuildReport, StageStatus

_STYLE = {StageStatus.OK: "green", StageStatus.FAILED: "bold red", StageStatus.SKIPPED: "dim"}


class PlainView:
    """One line per event worth a line; for CI logs and pipes."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose

    def __call__(self, event: Event) -> None:
        match event:
            case StageStarted(stage):
                self.console.print(f"==> {stage}", highlight=False)
            case StageFinished(record):
                why = f": {record.skip_reason}" if record.skip_reason else ""
                self.console.print(
                    f"    {record.name} {record.status}{why} ({record.duration_s:.2f}s)", highlight=False
                )
            case TargetStarted(_, target):
                self.console.print(f"    {target} ...", highlight=False)
            case TargetFinished(_, target, ok, duration):
                self.console.print(
                    f"    {target} {'ok' if ok else 'failed'} ({duration:.2f}s)", highlight=False
                )
            case Note(stage, text):
                self.console.print(f"    note: {text}", highlight=False)
            case PackageTested(_, package, state, passed, failed, skipped, duration, cached):
                mark = {"pass": "ok  ", "fail": "FAIL", "skip": "--  ", "none": "--  "}.get(state, state)
                extra = " (cached)" if cached else f" ({duration:.2f}s)"
                counts = (
                    "no tests"
                    if state == "none"
                    else f"{passed} passed"
                    + (f", {failed} failed" if failed else "")
                    + (f", {skipped} skipped" if skipped else "")
                )
                self.console.print(f"    {mark} {package}{extra} {counts}", highlight=False)
            case LogLine(stage, text) if self.verbose:
                self.console.print(f"    | {text}", highlight=False, markup=False)

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class LiveView:
    """A table of stages and targets with their elapsed time, redrawn in place."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[str, tuple[str, float, float | None]] = {}  # name -> (status, start, duration)
        self.notes: list[str] = []
        self.last_line = ""
        self.test_counts = (0, 0, 0, 0)
        self.live = Live(console=console, refresh_per_second=8, transient=False, get_renderable=self._render)

    def __call__(self, event: Event) -> None:
        now = time.monotonic()
        match event:
            case StageStarted(stage):
                self.rows[stage] = ("running", now, None)
            case StageFinished(record):
                started = self.rows.get(record.name, ("", now, None))[1]
                status = str(record.status) + (f": {record.skip_reason}" if record.skip_reason else "")
                self.rows[record.name] = (status, started, record.duration_s)
            case TargetStarted(stage, target):
                self.rows[f"{stage} {target}"] = ("running", now, None)
            case TargetFinished(stage, target, ok, duration):
                key = f"{stage} {target}"
                self.rows[key] = ("ok" if ok else "failed", self.rows.get(key, ("", now, None))[1], duration)
            case Note(_, text):
                self.notes.append(text)
            case PackageTested(stage, _, _, passed, failed, skipped, _, _):
                done, ok, bad, skip = self.test_counts
                self.test_counts = (done + 1, ok + passed, bad + failed, skip + skipped)
                status = f"running: {done + 1} packages, {ok + passed} passed"
                status += f", {bad + failed} failed" if bad + failed else ""
                self.rows[stage] = (status, self.rows.get(stage, ("", now, None))[1], None)
            case LogLine(_, text):
                self.last_line = text[-120:]

    def _render(self) -> Group:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("stage")
        table.add_column("status")
        table.add_column("elapsed", justify="right")
        now = time.monotonic()
        for name, (status, start, duration) in self.rows.items():
            elapsed = duration if duration is not None else now - start
            base = status.split(":")[0]
            style = {"ok": "green", "failed": "bold red", "skipped": "dim", "running": "yellow"}.get(base, "")
            indent = "  " if " " in name else ""
            table.add_row(indent + name, Text(status, style=style), f"{elapsed:.1f}s")
        parts: list[Table | Text] = [table]
        parts += [Text(f"note: {note}", style="cyan") for note in self.notes]
        if self.last_line and any(s[0] == "running" for s in self.rows.values()):
            parts.append(Text(self.last_line, style="dim"))
        return Group(*parts)

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.last_line = ""
        self.live.stop()


def print_summary(console: Console, report: BuildReport) -> None:
    if report.failure is None:
        console.print(
            f"[green]build {report.build_id} succeeded[/] in {report.duration_s:.2f}s "
            f"(go {report.go_version}, source {report.source.digest})"
        )
        for artifact in report.artifacts:
            console.print(
                f"  {artifact.path}  {artifact.size:>10} bytes  sha256 {artifact.sha256[:16]}…",
                highlight=False,
            )
        if report.checksums_file:
            console.print(f"  {report.checksums_file}", highlight=False)
        _print_tests(console, report)
        if report.reused_from:
            console.print(
                f"reused the result of build {report.reused_from} (identical inputs)", highlight=False
            )
        elif report.cache is not None and report.cache.gets:
            cache = report.cache
            console.print(
                f"build cache: {cache.hits}/{cache.gets} hits ({cache.hit_ratio:.0%}), "
                f"{cache.put_new_bytes / 2**20:.1f} MiB new"
                + (f", {cache.refills} go commands re-run over damaged entries" if cache.refills else "")
                + (f", {cache.bypasses} re-run without it" if cache.bypasses else ""),
                highlight=False,
            )
        return
    _print_tests(console, report)
    failure = report.failure
    console.print(
        f"[bold red]build {report.build_id} failed[/] in the {failure.stage} stage: "
        f"{failure.failure_class} / {failure.kind}"
    )
    console.print(failure.message, markup=False, highlight=False)
    for stage in report.stages:
        if stage.status is StageStatus.FAILED and stage.log_path:
            console.print(f"  full log: {stage.log_path}", highlight=False)


def _print_tests(console: Console, report: BuildReport) -> None:
    if report.tests is None:
        return
    summary = report.tests.summary
    line = f"tests: {summary.passed} passed, {summary.failed} failed, {summary.skipped} skipped"
    if summary.flaky:
        line += f", {summary.flaky} flaky"
    if summary.quarantined_failures:
        line += f" ({summary.quarantined_failures} failures quarantined)"
    console.print(line, highlight=False)
    for test in report.tests.tests:
        if test.state == "flaky":
            console.print(
                f"  flaky: {test.package} {test.name} (passed on attempt {test.attempts})", highlight=False
            )
    for test in summary.failures:
        tag = " [quarantined]" if test.quarantined else ""
        console.print(f"  FAIL {test.package} {test.name}{tag}", highlight=False, markup=False)
    if report.tests.coverage is not None:
        console.print(
            f"  coverage {report.tests.coverage.total_percent:.1f}%  {report.tests.coverage.html_path}",
            highlight=False,
        )
    if report.tests.junit_path:
        console.print(f"  {report.tests.junit_path}", highlight=False)
