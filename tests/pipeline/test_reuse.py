"""The result cache: an identical build reuses the earlier result; any change of a key input misses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gocaas.report.model import StageStatus
from gocaas.settings import Settings
from gocaas.spec import TestOptions, TestTier
from tests.conftest import BuildFn, copy_example, settings_env


@pytest.fixture
def reusing(fresh_settings) -> Settings:  # type: ignore[no-untyped-def]
    return fresh_settings(reuse_results=True)


def test_identical_build_reuses_the_earlier_result(build: BuildFn, reusing: Settings, tmp_path: Path) -> None:
    src = copy_example("multi", tmp_path / "multi")
    first = build(src, settings_=reusing, out=tmp_path / "one")
    assert first.failure is None and first.reused_from is None
    second = build(src, settings_=reusing, out=tmp_path / "two")
    assert second.failure is None
    assert second.reused_from == first.build_id and second.build_id != first.build_id
    ran = {s.name: s.status for s in second.stages}
    assert ran["reuse"] is StageStatus.OK
    for name in ("modules", "vet", "test", "build", "package"):
        assert ran[name] is StageStatus.SKIPPED, name
    assert [a.sha256 for a in second.artifacts] == [a.sha256 for a in first.artifacts]
    for artifact in second.artifacts:
        assert Path(artifact.path).parent == tmp_path / "two"
        assert Path(artifact.path).read_bytes() == (tmp_path / "one" / artifact.name).read_bytes()
    assert second.tests is not None and second.tests.junit_path == str(tmp_path / "two" / "junit.xml")
    assert (tmp_path / "two" / "junit.xml").is_file() and (tmp_path / "two" / "sha256sums.txt").is_file()
    inputs = json.loads((reusing.builds_dir / second.build_id / "inputs.json").read_text())
    assert inputs["source_digest"] == first.source.digest and inputs["go_version"] == first.go_version


@pytest.mark.parametrize(
    "change",
    ["source", "version", "targets", "strip", "shuffle", "tiers", "reuse-off"],
)
def test_any_key_input_change_misses(build: BuildFn, reusing: Settings, tmp_path: Path, change: str) -> None:
    src = copy_example("multi", tmp_path / "multi")
    first = build(src, settings_=reusing, version="1.0.0")
    assert first.failure is None
    settings = reusing
    options: dict[str, object] = {"version": "1.0.0"}
    targets = ("linux/amd64",)
    if change == "source":
        (src / "greeting" / "extra.go").write_text("package greeting\n\nconst Extra = 1\n")
    elif change == "version":
        options["version"] = "1.0.1"
    elif change == "targets":
        targets = ("linux/amd64", "linux/386")
    elif change == "strip":
        options["strip"] = True
    elif change == "shuffle":
        options["tests"] = TestOptions(shuffle="off")
    elif change == "tiers":
        settings = reusing.model_copy(update={"test_tiers": (TestTier(name="unit", timeout=123),)})
    elif change == "reuse-off":
        options["reuse"] = False
    second = build(src, settings_=settings, targets=targets, **options)
    assert second.failure is None
    assert second.reused_from is None, change
    assert {s.name: s.status for s in second.stages}["build"] is StageStatus.OK


def test_a_failed_build_is_not_reused(build: BuildFn, reusing: Settings, tmp_path: Path) -> None:
    src = copy_example("hello", tmp_path / "hello")
    (src / "broken.go").write_text("package main\n\nvar x int = \"s\"\n")
    first = build(src, settings_=reusing)
    second = build(src, settings_=reusing)
    assert first.failure is not None and second.failure is not None
    assert second.reused_from is None
    assert second.failure.kind == first.failure.kind


def test_a_damaged_entry_is_a_miss(build: BuildFn, reusing: Settings, tmp_path: Path) -> None:
    src = copy_example("hello", tmp_path / "hello")
    first = build(src, settings_=reusing)
    for entry in reusing.results_dir.glob("*/*/files"):
        shutil.rmtree(entry)
    second = build(src, settings_=reusing)
    assert first.failure is None and second.failure is None
    assert second.reused_from is None


# A build of the same spec as the `build` fixture's, in a fresh interpreter; prints what it loaded.
REUSED_BUILD = """
import json, sys
from pathlib import Path
from gocaas.pipeline.run import run_build
from gocaas.settings import Settings
from gocaas.spec import BuildOptions, BuildSpec, SourceSpec, Target
spec = BuildSpec(
    source=SourceSpec(kind="directory", location=sys.argv[1]),
    options=BuildOptions(targets=(Target.parse("linux/amd64"),)),
)
report = run_build(spec, Settings(), out_dir=Path(sys.argv[2]))
stages = sorted(name for name in sys.modules if name.startswith("gocaas.stages."))
print(json.dumps({"failure": str(report.failure), "reused_from": report.reused_from, "stages": stages}))
"""


def test_a_reused_build_loads_none_of_the_later_stages(
    build: BuildFn, reusing: Settings, tmp_path: Path
) -> None:
    """The stages after the result cache's check are imported when they first run, so that a build the
    result cache answers starts quickly: in a fresh interpreter, a reused build loads none of them."""
    src = copy_example("multi", tmp_path / "multi")
    first = build(src, settings_=reusing, out=tmp_path / "one")
    assert first.failure is None
    proc = subprocess.run(
        [sys.executable, "-c", REUSED_BUILD, str(src), str(tmp_path / "two")],
        env=settings_env(reusing),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.splitlines()[-1])
    assert loaded["failure"] == "None" and loaded["reused_from"] == first.build_id
    later = {"modules", "vet", "test", "build", "package", "gotest", "testfiles", "reruns"}
    assert not {name.removeprefix("gocaas.stages.") for name in loaded["stages"]} & later, loaded["stages"]
    assert "gocaas.stages.results" in loaded["stages"]
