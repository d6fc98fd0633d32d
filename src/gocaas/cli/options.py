"""Options shared by `gocaas build` and `gocaas test`, declared once, and running a spec with a view."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gocaas.cli.common import fail
from gocaas.pipeline.stage import Stage
from gocaas.settings import Settings
from gocaas.spec import BuildSpec

Source = Annotated[str, typer.Argument(help="A module directory, a .zip/.tar.gz/.tgz archive, or a git URL.")]
Ref = Annotated[str | None, typer.Option(help="Git ref (branch, tag or commit) of a git URL.")]
GoOpt = Annotated[str | None, typer.Option("--go", help="Go version, e.g. 1.25.3; default: the go.mod's.")]
Out = Annotated[Path, typer.Option(help="Where artifacts, junit.xml and coverage files go.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Write the JSON report to stdout.")]
ReportFile = Annotated[Path | None, typer.Option("--report", help="Write the JSON report to this file.")]
Cgo = Annotated[bool, typer.Option(help="Build with CGO_ENABLED=1.")]
Timeout = Annotated[float | None, typer.Option(help="Seconds for the whole build.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show go's output as it comes.")]
Reuse = Annotated[bool, typer.Option(help="Reuse an identical earlier build's result (the result cache).")]
KeepWorkspace = Annotated[bool, typer.Option(help="Keep the private workspace after the build.")]

Coverage = Annotated[bool, typer.Option(help="Coverage: merged coverage.out, percentages, coverage.html.")]
CoverpkgAll = Annotated[bool, typer.Option("--coverpkg-all", help="-coverpkg=./... (cover every package).")]
Reruns = Annotated[int, typer.Option(min=0, max=10, help="Re-runs of each failed test, alone.")]
RerunThreshold = Annotated[int, typer.Option(min=0, help="More failed tests than this: no re-runs.")]
Flaky = Annotated[str, typer.Option(help="A flaky test (fails, then passes): fail or warn.")]
Shuffle = Annotated[
    str,
    typer.Option(
        help="auto (shuffle what changed since the last build; go caches the rest), on, off, or a seed."
    ),
]
Race = Annotated[bool, typer.Option(help="-race (needs cgo and a C compiler).")]
Count = Annotated[int | None, typer.Option(min=1, max=10_000, help="-count N (1 disables go's test cache).")]
Run = Annotated[str | None, typer.Option(help="-run REGEXP: only the tests it matches.")]
TestTimeout = Annotated[float | None, typer.Option(help="-timeout in seconds for each go test run.")]
Tier = Annotated[list[str] | None, typer.Option("--tier", help="Test tier(s) from settings; repeatable.")]
ChangedSince = Annotated[
    str | None,
    typer.Option(help="Only test packages whose files or dependencies changed since this git ref."),
]


def execute(
    spec: BuildSpec,
    settings: Settings,
    stages: Sequence[Stage],
    *,
    out: Path,
    json_out: bool,
    report: Path | None,
    verbose: bool,
    keep_workspace: bool,
) -> None:
    """Run the stages with a live view (or plain lines), print the summary, write the report, exit."""
    from gocaas.cli.view import LiveView, PlainView, print_summary
    from gocaas.pipeline.run import run_build

    check_outputs(out, report, json_out=json_out)
    console = Console(stderr=json_out, soft_wrap=True)
    view = LiveView(console) if console.is_terminal and not verbose else PlainView(console, verbose)
    with view:
        result = run_build(
            spec, settings, out_dir=out.resolve(), sink=view, stages=stages, keep_workspace=keep_workspace
        )
    print_summary(console, result)
    if report is not None:
        try:
            report.write_text(result.to_json(), encoding="utf-8")
        except OSError as e:  # checked before the build; something changed since
            raise fail(f"--report {report}: cannot write it: {e.strerror or e}", as_json=json_out) from None
    if json_out:
        sys.stdout.write(result.to_json() + "\n")
    raise typer.Exit(result.exit_code)


def check_outputs(out: Path, report: Path | None, *, json_out: bool) -> None:
    """Before the build, not after it: --out is (or can be made) a writable directory, --report a file in
    one."""
    check_writable_dir("--out", out, json_out=json_out)
    if report is not None:
        check_writable_dir("--report", report.parent, json_out=json_out)
        if report.is_dir():
            raise fail(f"--report {report}: is a directory; give a file name", as_json=json_out)


def check_writable_dir(option: str, directory: Path, *, json_out: bool) -> None:
    """The directory an option names exists or can be made, and we may write in it; else a usage error."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        what = "exists and is not a directory" if e.errno == errno.EEXIST else (e.strerror or str(e))
        raise fail(f"{option} {directory}: {what}", as_json=json_out) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise fail(f"{option} {directory}: not writable", as_json=json_out)


# build only
Targets = Annotated[
    list[str] | None, typer.Option("--target", "-t", help="GOOS/GOARCH; repeatable. Default: this machine's.")
]
Version = Annotated[
    str | None, typer.Option(help="Stamp -X main.version=VERSION; default: git describe of the source.")
]
Strip = Annotated[bool, typer.Option(help="Link with -s -w (no symbol table, no DWARF).")]
Archive = Annotated[str | None, typer.Option(help="Also package each target as tar.gz or zip.")]
Vet = Annotated[bool, typer.Option(help="Run go vet ./... before testing and building.")]
Test = Annotated[bool, typer.Option(help="Run the tests (go test ./...) before building.")]
