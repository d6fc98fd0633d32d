"""`gocaas` commands. Options become a validated BuildSpec; the pipeline does the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from gocaas.cli.builds_cmd import builds_app
from gocaas.cli.cache_cmd import cache_app, cacheprog
from gocaas.cli.common import fail, load, validation_message
from gocaas.cli.daemon_cmd import daemon_app
from gocaas.cli.options import (
    Archive,
    Cgo,
    ChangedSince,
    Count,
    Coverage,
    CoverpkgAll,
    Flaky,
    GoOpt,
    JsonOut,
    KeepWorkspace,
    Out,
    Race,
    Ref,
    ReportFile,
    Reruns,
    RerunThreshold,
    Reuse,
    Run,
    Shuffle,
    Source,
    Strip,
    Targets,
    Test,
    TestTimeout,
    Tier,
    Timeout,
    Verbose,
    Version,
    Vet,
    execute,
)
from gocaas.cli.quarantine_cmd import flaky, quarantine_app
from gocaas.cli.remote_cmd import logs, status, submit
from gocaas.cli.serve_cmd import serve, token_app
from gocaas.cli.toolchain_cmd import toolchain_app
from gocaas.errors import BadInput, GocaasError
from gocaas.spec import BuildSpec, TestOptions

# The test options' defaults live in TestOptions; both commands show them from there.
_TESTS = TestOptions()

app = typer.Typer(no_args_is_help=True, add_completion=False, help="A build service for Go.")
app.add_typer(toolchain_app, name="toolchain")
app.add_typer(quarantine_app, name="quarantine")
app.command("flaky")(flaky)
app.add_typer(cache_app, name="cache")
app.add_typer(builds_app, name="builds")
app.add_typer(daemon_app, name="daemon")
app.command("serve")(serve)
app.add_typer(token_app, name="token")
app.command("submit")(submit)
app.command("status")(status)
app.command("logs")(logs)
app.command(
    "cacheprog",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)(cacheprog)


def make_spec(
    source: str, ref: str | None, changed_since: str | None, json_out: bool, **options: Any
) -> BuildSpec:
    """The CLI's words as a BuildSpec; anything invalid is a usage error naming the option."""
    from gocaas.source import detect_kind, local_path
    from gocaas.spec import BuildOptions, SourceKind, SourceSpec, Target, TestOptions

    try:
        kind = detect_kind(source)
        if ref is not None and kind is not SourceKind.GIT:
            raise BadInput(f"--ref only applies to a git URL, and {source!r} is a local {kind}")
        location = local_path(source) if kind is not SourceKind.GIT else source
        targets = tuple(Target.parse(t) for t in options.pop("target") or ()) or (Target.host(),)
        tests = TestOptions(**options.pop("tests"))
        return BuildSpec(
            source=SourceSpec(kind=kind, location=location, ref=ref, changed_since=changed_since),
            options=BuildOptions(targets=targets, tests=tests, **options),
        )
    except ValidationError as exc:
        raise fail(validation_message(exc), as_json=json_out) from None
    except (GocaasError, ValueError) as exc:
        raise fail(str(exc), as_json=json_out) from None


def test_options(
    enabled: bool,
    coverage: bool,
    coverpkg_all: bool,
    reruns: int,
    rerun_threshold: int,
    flaky: str,
    shuffle: str,
    race: bool,
    count: int | None,
    run: str | None,
    test_timeout: float | None,
    tier: list[str] | None,
) -> dict[str, Any]:
    return {
        "enabled": enabled,
        "coverage": coverage,
        "coverpkg_all": coverpkg_all,
        "reruns": reruns,
        "rerun_threshold": rerun_threshold,
        "flaky": flaky,
        "shuffle": shuffle,
        "race": race,
        "count": count,
        "run": run,
        "timeout": test_timeout,
        "tiers": tuple(tier or ()),
    }


@app.command()
def build(
    source: Source,
    ref: Ref = None,
    go: GoOpt = None,
    target: Targets = None,
    out: Out = Path("dist"),
    json_out: JsonOut = False,
    report: ReportFile = None,
    version: Version = None,
    strip: Strip = False,
    archive: Archive = None,
    cgo: Cgo = False,
    vet: Vet = True,
    test: Test = True,
    coverage: Coverage = False,
    coverpkg_all: CoverpkgAll = False,
    reruns: Reruns = _TESTS.reruns,
    rerun_threshold: RerunThreshold = _TESTS.rerun_threshold,
    flaky: Flaky = _TESTS.flaky.value,
    shuffle: Shuffle = _TESTS.shuffle,
    race: Race = False,
    count: Count = None,
    run: Run = None,
    test_timeout: TestTimeout = None,
    tier: Tier = None,
    changed_since: ChangedSince = None,
    reuse: Reuse = True,
    timeout: Timeout = None,
    verbose: Verbose = False,
    keep_workspace: KeepWorkspace = False,
) -> None:
    """Run the Go delivery pipeline on a module: toolchain, modules, vet, test, build, package."""
    from gocaas.pipeline.run import DEFAULT_STAGES

    settings = load(build_timeout=timeout)
    spec = make_spec(
        source,
        ref,
        changed_since,
        json_out,
        go_version=go,
        target=target,
        cgo=cgo,
        vet=vet,
        version=version,
        strip=strip,
        archives=archive,
        reuse=reuse,
        tests=test_options(
            test,
            coverage,
            coverpkg_all,
            reruns,
            rerun_threshold,
            flaky,
            shuffle,
            race,
            count,
            run,
            test_timeout,
            tier,
        ),
    )
    execute(
        spec,
        settings,
        DEFAULT_STAGES,
        out=out,
        json_out=json_out,
        report=report,
        verbose=verbose,
        keep_workspace=keep_workspace,
    )


@app.command("test")
def test_command(
    source: Source,
    ref: Ref = None,
    go: GoOpt = None,
    out: Out = Path("dist"),
    json_out: JsonOut = False,
    report: ReportFile = None,
    cgo: Cgo = False,
    coverage: Coverage = False,
    coverpkg_all: CoverpkgAll = False,
    reruns: Reruns = _TESTS.reruns,
    rerun_threshold: RerunThreshold = _TESTS.rerun_threshold,
    flaky: Flaky = _TESTS.flaky.value,
    shuffle: Shuffle = _TESTS.shuffle,
    race: Race = False,
    count: Count = None,
    run: Run = None,
    test_timeout: TestTimeout = None,
    tier: Tier = None,
    changed_since: ChangedSince = None,
    reuse: Reuse = True,
    timeout: Timeout = None,
    verbose: Verbose = False,
    keep_workspace: KeepWorkspace = False,
) -> None:
    """Run the module's tests: results, junit.xml, coverage, flaky re-runs, quarantine."""
    from gocaas.pipeline.run import TEST_STAGES

    settings = load(build_timeout=timeout)
    spec = make_spec(
        source,
        ref,
        changed_since,
        json_out,
        go_version=go,
        target=None,
        cgo=cgo,
        reuse=reuse,
        tests=test_options(
            True,
            coverage,
            coverpkg_all,
            reruns,
            rerun_threshold,
            flaky,
            shuffle,
            race,
            count,
            run,
            test_timeout,
            tier,
        ),
    )
    execute(
        spec,
        settings,
        TEST_STAGES,
        out=out,
        json_out=json_out,
        report=report,
        verbose=verbose,
        keep_workspace=keep_workspace,
    )


def main() -> None:
    from gocaas.cli.interrupt import stop_go_on_signals

    stop_go_on_signals()
    app()
