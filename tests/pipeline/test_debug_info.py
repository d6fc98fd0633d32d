"""DWARF is compiled only for a link that keeps it: vet and test drop it unless the build stage links the
host target unstripped, and then every stage compiles the same way, so the build stage reuses what vet and
test compiled instead of compiling it all again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gocaas.report.model import BuildReport
from gocaas.settings import Settings
from gocaas.spec import BuildOptions, Target
from gocaas.stages.gocmd import CACHE_STATS, NO_DWARF, host_checks_keep_dwarf
from tests.conftest import EXAMPLES, BuildFn
from tests.pipeline.test_test_stage import run_tests

HOST = str(Target.host())
OTHER = "windows/arm64" if HOST != "windows/arm64" else "linux/amd64"
CROSS = "darwin/arm64" if HOST != "darwin/arm64" else "linux/amd64"  # as test_matrix builds: warm
PIPELINE = ["source", "toolchain", "modules", "vet", "test", "build", "package"]
TEST_ONLY = ["source", "toolchain", "modules", "test"]


def _options(targets: tuple[str, ...], strip: bool = False) -> BuildOptions:
    return BuildOptions(targets=tuple(Target.parse(t) for t in targets), strip=strip)


@pytest.mark.parametrize(
    ("stages", "targets", "strip", "keeps"),
    [
        (PIPELINE, (HOST,), False, True),  # the build stage reuses vet's and test's compiles
        (PIPELINE, (OTHER, HOST), False, True),
        (PIPELINE, (HOST,), True, False),  # -s -w: nobody links DWARF
        (PIPELINE, (OTHER,), False, False),  # nothing of vet's or test's is shared with another target
        (TEST_ONLY, (HOST,), False, False),  # gocaas test
        ([s for s in PIPELINE if s != "build"], (HOST,), False, False),
    ],
)
def test_vet_and_test_keep_dwarf_only_for_an_unstripped_host_build(
    stages: list[str], targets: tuple[str, ...], strip: bool, keeps: bool
) -> None:
    assert host_checks_keep_dwarf(stages, _options(targets, strip)) is keeps


def _command_lines(report: BuildReport, stage: str, verb: str) -> list[str]:
    [record] = [s for s in report.stages if s.name == stage]
    assert record.log_path is not None
    lines = Path(record.log_path).read_text().splitlines()
    found = [line for line in lines if f"$ go {verb} " in line]
    assert found, f"no go {verb} in the {stage} log"
    return found


def _flagged(report: BuildReport, stage: str, verb: str) -> bool:
    flags = {NO_DWARF in line for line in _command_lines(report, stage, verb)}
    assert len(flags) == 1, f"some {stage} commands drop DWARF and some don't"
    return flags.pop()


def test_the_go_commands_get_the_flag_the_rule_gives(
    build: BuildFn, settings: Settings, tmp_path: Path
) -> None:
    tested = run_tests(settings, EXAMPLES / "multi", tmp_path / "tested", shuffle="off")
    assert _flagged(tested, "test", "test")

    default = build(EXAMPLES / "multi", targets=(HOST,))
    assert default.failure is None
    assert not _flagged(default, "vet", "vet")
    assert not _flagged(default, "test", "test")
    assert not _flagged(default, "build", "build")

    stripped = build(EXAMPLES / "multi", targets=(HOST,), strip=True)
    assert stripped.failure is None
    assert _flagged(stripped, "vet", "vet")
    assert _flagged(stripped, "test", "test")
    assert _flagged(stripped, "build", "build")

    elsewhere = build(EXAMPLES / "multi", targets=(CROSS,))
    assert elsewhere.failure is None
    assert _flagged(elsewhere, "vet", "vet")
    assert not _flagged(elsewhere, "build", "build")


def _misses_per_command(settings: Settings, report: BuildReport) -> list[int]:
    """The build cache misses of each go command of a build, in the order they ended."""
    lines = (settings.builds_dir / report.build_id / CACHE_STATS).read_text().splitlines()
    return [json.loads(line)["misses"] for line in lines]


def test_the_build_stage_reuses_what_vet_and_test_compiled(
    build: BuildFn, fresh_settings: Callable[..., Settings]
) -> None:
    """From an empty build cache, stripped and then not: the build stage's go build (the last command)
    compiles little more than the main packages, while vet (the first) compiled everything."""
    settings = fresh_settings(cacheprog=True)
    for strip in (True, False):
        report = build(EXAMPLES / "multi", targets=(HOST,), strip=strip, settings_=settings)
        assert report.failure is None, report.failure
        misses = _misses_per_command(settings, report)
        vet, build_stage = misses[0], misses[-1]
        assert vet > 50, misses  # a cold compile of fmt and what it imports
        assert build_stage <= 4, misses  # two main packages: compile and link each
