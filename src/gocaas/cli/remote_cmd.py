"""`gocaas submit`, `gocaas status`, `gocaas logs`: the same builds, run by a `gocaas serve` elsewhere.

stdout carries what a script wants (the build id, `--json`, the log); the view and messages go to stderr. A
followed build is shown with the local build's view: the server's stage list becomes the pipeline's
StageStarted/StageFinished events.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from gocaas.cli.common import fail
from gocaas.cli.options import Coverage, GoOpt, Race, Ref, Test, check_writable_dir
from gocaas.errors import BadInput, ExitCode, GocaasError
from gocaas.pipeline.events import EventSink, Note, StageFinished, StageStarted
from gocaas.report.model import StageRecord, StageStatus

if TYPE_CHECKING:  # the client (httpx) is imported when a remote command runs, not by every command
    from gocaas.client import Build, BuildOptions, GocaasClient, Submitted

Server = Annotated[
    str,
    typer.Option(
        "--server", envvar="GOCAAS_SERVER", help="The gocaas server: http(s)://HOST[:PORT].", show_envvar=True
    ),
]
Token = Annotated[
    str,
    typer.Option(
        "--token", envvar="GOCAAS_TOKEN", help="A bearer token (gocaas token create).", show_envvar=True
    ),
]
Targets = Annotated[
    list[str] | None, typer.Option("--target", "-t", help="GOOS/GOARCH; repeatable. Default: the server's.")
]
BuildId = Annotated[str, typer.Argument(help="The build id `gocaas submit` printed.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the server's JSON on stdout.")]

_POLL = 30.0  # seconds each long poll may wait for a change
_INTERRUPTED = 130
_CHECKSUMS = "sha256sums.txt"
_FINAL = frozenset(s.value for s in StageStatus)


def submit(
    source: Annotated[
        str,
        typer.Argument(
            help="A module directory (packed and uploaded), a .tar.gz/.zip archive, or a git URL the server "
            "fetches."
        ),
    ],
    server: Server,
    token: Token,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Show the build's stages live; exit with its exit code.")
    ] = False,
    download: Annotated[
        Path | None,
        typer.Option(help="Wait for the end, then download every artifact here (sha256 checked)."),
    ] = None,
    target: Targets = None,
    test: Test = True,
    race: Race = False,
    coverage: Coverage = False,
    priority: Annotated[
        int | None, typer.Option(min=0, max=9, help="0 lowest, 9 highest; default 5.")
    ] = None,
    ref: Ref = None,
    go: GoOpt = None,
    version: Annotated[str | None, typer.Option(help="Stamp -X main.version=VERSION.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Submit a build to a gocaas server and print its id; --follow or --download wait for the end."""
    from gocaas.client import BuildOptions, GocaasClient

    console = Console(stderr=True, soft_wrap=True)
    if download is not None:  # now, not once the build is done
        check_writable_dir("--download", download, json_out=json_out)
    options = BuildOptions(
        targets=tuple(target or ()),
        go_version=go,
        tests=test,
        race=race,
        coverage=coverage,
        version=version,
        priority=priority,
    )
    build: Build | None = None
    build_id: str | None = None
    try:
        with GocaasClient(server, token) as client:
            submitted = _submit(client, source, ref, options, console)
            build_id = submitted.build_id
            already = (
                " (an identical build was already queued or running: that one)" if submitted.existing else ""
            )
            shown = f"build {submitted.build_id} {submitted.status} on {client.shown_url}{already}"
            console.print(shown, highlight=False)
            if not (follow or download):
                _out(submitted.model_dump(mode="json") if json_out else submitted.build_id, json_out)
                raise typer.Exit(ExitCode.OK)
            if not json_out:
                _out(submitted.build_id, False)
            build = (
                _follow(client, submitted.build_id, console) if follow else _wait(client, submitted.build_id)
            )
            _print_end(console, build)
            saved = _download_all(client, build, download, console) if download is not None else []
    except GocaasError as e:
        raise fail(e.message, e.exit_code, as_json=json_out) from None
    except KeyboardInterrupt:
        if build_id is not None:
            console.print(
                f"stopped watching: build {build_id} goes on on the server (gocaas status {build_id})"
            )
        raise typer.Exit(_INTERRUPTED) from None
    assert build is not None
    if json_out:
        _out(build.raw | {"downloaded": saved}, True)
    failure_class = build.failure.failure_class if build.failure else None
    raise typer.Exit(exit_code(build.status, build.exit_code, failure_class))


def status(build_id: BuildId, server: Server, token: Token, json_out: JsonFlag = False) -> None:
    """Show a build on the server: status, queue position, stages, failure."""
    from gocaas.client import GocaasClient

    try:
        with GocaasClient(server, token) as client:
            build = client.get(build_id)
    except GocaasError as e:
        raise fail(e.message, e.exit_code, as_json=json_out) from None
    if json_out:
        _out(build.raw, True)
        return
    out = Console(soft_wrap=True, highlight=False)
    line = f"build {build.id}: {build.status}"
    if build.stage and not build.finished:
        line += f" (stage {build.stage})"
    if build.exit_code is not None:
        line += f", exit code {build.exit_code}"
    out.print(line, markup=False)
    if build.waiting_reason:
        out.print(f"  {build.waiting_reason}", markup=False)
    for stage in build.stages:
        took = f"{stage.duration_s:.2f}s" if stage.duration_s is not None else ""
        why = f": {stage.skip_reason}" if stage.skip_reason else ""
        out.print(f"  {stage.name:<10} {stage.status}{why} {took}".rstrip(), markup=False)
    if build.failure is not None:
        out.print(f"  failure: {build.failure.failure_class} / {build.failure.kind}", markup=False)
    if build.message:
        out.print(f"  {build.message}", markup=False)
    if build.reused_from:
        out.print(f"  reused the result of build {build.reused_from}", markup=False)


def logs(
    build_id: BuildId,
    server: Server,
    token: Token,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Stream the log as it is written; exit with the build's code."),
    ] = False,
) -> None:
    """Print a build's log; --follow streams it until the build ends."""
    from gocaas.client import GocaasClient

    try:
        with GocaasClient(server, token) as client:
            if not follow:
                sys.stdout.write(client.log(build_id))
                return
            stream = client.follow_log(build_id)
            for chunk in stream:
                sys.stdout.write(chunk)
                sys.stdout.flush()
    except GocaasError as e:
        raise fail(e.message, e.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(_INTERRUPTED) from None
    assert stream.end is not None
    raise typer.Exit(exit_code(stream.end.status, stream.end.exit_code, None))


def exit_code(status: str, code: int | None, failure_class: str | None) -> int:
    """The build's own exit code; without one, from its status (a cancelled build: infrastructure)."""
    if code is not None:
        return code
    if status == "succeeded":
        return ExitCode.OK
    return ExitCode.CODE_FAILED if failure_class == "user" else ExitCode.INFRASTRUCTURE


def _submit(
    client: GocaasClient, source: str, ref: str | None, options: BuildOptions, console: Console
) -> Submitted:
    from gocaas.client import pack_directory
    from gocaas.source import detect_kind
    from gocaas.spec import SourceKind

    kind = detect_kind(source)
    if ref is not None and kind is not SourceKind.GIT:
        raise BadInput(f"--ref only applies to a git URL, and {source!r} is a local {kind}")
    if kind is SourceKind.GIT:
        return client.submit_git(source, ref, options)
    if kind is SourceKind.ARCHIVE:
        if not Path(source).exists():
            raise BadInput(f"no archive {source!r}", kind="no_source")
        if not Path(source).is_file():  # a fifo or a device would be read forever
            raise BadInput(f"archive {source!r}: not a regular file", kind="no_source")
        return client.submit_archive(Path(source), options)
    with tempfile.TemporaryDirectory(prefix="gocaas-pack-") as scratch:
        packed = pack_directory(Path(source), Path(scratch) / "source.tar.gz")
        console.print(f"{packed.describe()}; uploading", highlight=False)
        for reason in packed.skipped:
            console.print(f"  left out {escape(reason)}", highlight=False)
        return client.submit_archive(packed.path, options)


class StageEvents:
    """Turns successive views of a remote build into the pipeline's events, each change once."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.seen: dict[str, str] = {}
        self.waiting: str | None = None
        self.attempts = 0

    def update(self, build: Build) -> None:
        if build.attempts > 1 and build.attempts != self.attempts:
            self.sink(Note("queue", f"attempt {build.attempts} (the previous worker stopped)"))
            self.seen.clear()
        self.attempts = build.attempts
        if build.status == "queued" and build.waiting_reason and build.waiting_reason != self.waiting:
            self.sink(Note("queue", f"queued: {build.waiting_reason}"))
        self.waiting = build.waiting_reason
        for stage in build.stages:
            before = self.seen.get(stage.name)
            if before == stage.status:
                continue
            if stage.status != "running" and stage.status not in _FINAL:
                continue  # a status this client does not know
            if before != "running":
                self.sink(StageStarted(stage.name))
            if stage.status != "running":
                record = StageRecord(
                    name=stage.name,
                    status=StageStatus(stage.status),
                    skip_reason=stage.skip_reason,
                    duration_s=stage.duration_s or 0.0,
                )
                self.sink(StageFinished(record))
            self.seen[stage.name] = stage.status


def _follow(client: GocaasClient, build_id: str, console: Console) -> Build:
    from gocaas.cli.view import LiveView, PlainView

    view: LiveView | PlainView = LiveView(console) if console.is_terminal else PlainView(console)
    events = StageEvents(view)
    with view:
        for build in client.watch(build_id, wait=_POLL):
            events.update(build)
    return build


def _wait(client: GocaasClient, build_id: str) -> Build:
    for build in client.watch(build_id, wait=_POLL):
        if build.finished:
            return build
    raise AssertionError("unreachable: watch ends with a finished build")


def _print_end(console: Console, build: Build) -> None:
    if build.status == "succeeded":
        reused = f" (reused the result of build {build.reused_from})" if build.reused_from else ""
        console.print(f"[green]build {build.id} succeeded[/]{reused}", highlight=False)
        return
    failure = build.failure
    stage = next((s.name for s in build.stages if s.status == "failed"), build.stage)
    where = f" in the {stage} stage" if stage else ""
    what = f": {failure.failure_class} / {failure.kind}" if failure else ""
    console.print(f"[bold red]build {build.id} {build.status}[/]{where}{what}", highlight=False)
    if build.message:
        console.print(build.message, markup=False, highlight=False)


def _download_all(client: GocaasClient, build: Build, dest: Path, console: Console) -> list[dict[str, Any]]:
    if build.status != "succeeded":
        console.print(f"nothing downloaded: the build {build.status}", highlight=False)
        return []
    saved: list[dict[str, Any]] = []
    for artifact in client.artifacts(build.id):
        path = client.download(artifact, dest)
        console.print(
            f"  {path}  {artifact.size:>10} bytes  sha256 {artifact.sha256[:16]}… ok", highlight=False
        )
        saved.append(
            {"name": artifact.name, "path": str(path), "sha256": artifact.sha256, "size": artifact.size}
        )
    if saved and not any(entry["name"] == _CHECKSUMS for entry in saved):
        from gocaas.report.checksums import write_checksums

        # As a local build leaves it: `sha256sum -c sha256sums.txt` checks the files again later.
        write_checksums(dest / _CHECKSUMS, [(entry["name"], entry["sha256"]) for entry in saved])
    console.print(
        f"downloaded {len(saved)} artifacts to {dest}, checksums verified ({dest / _CHECKSUMS})",
        highlight=False,
    )
    return saved


def _out(value: Any, as_json: bool) -> None:
    sys.stdout.write((json.dumps(value, indent=2) if as_json else str(value)) + "\n")
    sys.stdout.flush()
