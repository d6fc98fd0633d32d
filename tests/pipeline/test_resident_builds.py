"""gocaas builds with cache_resident on: their go commands, in the sandbox or not, are served by one resident
cache program (gocaas.cache.resident) over the shared store."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gocaas.cache.attacher import attacher_path
from gocaas.cache.resident_server import running, stop
from gocaas.report.model import BuildReport
from gocaas.settings import Settings
from gocaas.stages.gocmd import resident_runtime_dir
from tests.cache.conftest import TOKEN, LiveServer
from tests.conftest import EXAMPLES, BuildFn
from tests.pipeline.test_cache_damage import binaries, healthy, stats_of  # noqa: F401 - healthy: a fixture
from tests.pipeline.test_sandbox import bwrap, worker  # noqa: F401 - bwrap: a fixture


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private runtime directory for this test's resident program, ended with it."""
    path = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: a socket's path has at most 107 bytes
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    yield path
    for resident in running(str(path / "gocaas")):
        stop(resident)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    ("sandbox", "attacher"),
    [("off", True), ("on", True), ("off", False), ("on", False)],
    ids=["unsandboxed", "sandboxed", "unsandboxed-python", "sandboxed-python"],
)
def test_a_resident_program_serves_the_builds_go_commands(
    build: BuildFn,
    settings: Settings,
    fresh_settings,  # type: ignore[no-untyped-def]
    healthy: BuildReport,  # noqa: F811
    runtime: Path,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sandbox: str,
    attacher: bool,
) -> None:
    """With the compiled attacher (the default) or Python's program in its place (cache_attacher off)."""
    if sandbox == "on":
        request.getfixturevalue("bwrap")
    resident = worker(
        fresh_settings,
        settings,
        sandbox=sandbox,
        cache_resident="on",
        cache_resident_idle=30,
        cache_attacher=attacher,
    )
    reports = [build(EXAMPLES / "hello", settings_=resident, out=tmp_path / f"out{n}") for n in range(2)]
    through = f"reach their cache program through {attacher_path(resident.helpers_dir)}"
    for report in reports:
        assert report.failure is None, report.failure
        assert report.sandboxed is (sandbox == "on")
        assert binaries(report) == binaries(healthy)
        assert (through in logs_of(resident, report)) is attacher

    (program,) = running(str(runtime / "gocaas"))
    assert Path(program.store) == settings.cache_dir.resolve()
    later = stats_of(resident, reports[1])
    assert later and all(line.get("resident") is True for line in later), later
    assert {line["pid"] for line in later} == {program.pid}
    assert sum(int(line["hits"]) for line in later) > 100, "the store was warm"


def logs_of(settings: Settings, report: BuildReport) -> str:
    logs = settings.builds_dir / report.build_id / "logs"
    return "".join(log.read_text() for log in sorted(logs.iterdir()))


def test_the_setting_decides_whether_a_resident_program_runs(
    settings: Settings, runtime: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on = settings.model_copy(update={"cache_resident": "on"})
    auto = settings.model_copy(update={"cache_resident": "auto"})
    assert resident_runtime_dir(settings) is None, "the tests' settings say off"
    assert resident_runtime_dir(on) == str(runtime / "gocaas")
    monkeypatch.setenv("CI", "true")
    assert resident_runtime_dir(auto) is None, "auto: not on CI, where nobody reuses it"
    assert resident_runtime_dir(on) == str(runtime / "gocaas")
    monkeypatch.delenv("CI")
    assert resident_runtime_dir(auto) == str(runtime / "gocaas")


def test_with_a_remote_tier_too(
    build: BuildFn,
    settings: Settings,
    fresh_settings,  # type: ignore[no-untyped-def]
    healthy: BuildReport,  # noqa: F811
    runtime: Path,
    tmp_path: Path,
) -> None:
    server = LiveServer(settings.cache_dir, read_only=True)
    try:
        fresh = fresh_settings(  # a store of its own, empty: what it has comes from the remote
            sandbox="off",
            cache_resident="on",
            cache_resident_idle=30,
            cache_remote_url=server.url,
            cache_remote_token=TOKEN,
        )
        reports = [build(EXAMPLES / "hello", settings_=fresh, out=tmp_path / f"out{n}") for n in range(2)]
    finally:
        server.stop()
    for report in reports:
        assert report.failure is None, report.failure
        assert binaries(report) == binaries(healthy)
    first, later = stats_of(fresh, reports[0]), stats_of(fresh, reports[1])
    # one at a time, or streamed in by the prefetch when the server has a trace of an earlier session
    assert sum(int(line["remote_hits"]) + int(line["prefetched"]) for line in first) > 50
    assert later and all(line.get("resident") is True for line in later), later
    (program,) = running(str(runtime / "gocaas"))
    assert Path(program.store) == fresh.cache_dir.resolve()
