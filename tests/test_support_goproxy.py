"""Self-tests of tests/support/goproxy.py: the fixture proxies are real enough for the real go command."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.goproxy import (
    FlakyProxyServer,
    build_proxy,
    dead_proxy_url,
    escape_path,
    file_proxy_url,
    fixture_modules,
    go_env,
    make_consumer,
    run_go,
)

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="the go command is not on PATH")

REQUIRES = {"example.test/greet": "v1.1.0", "example.test/color": "v0.3.0"}


@pytest.fixture(scope="module")
def gocache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for this module's go commands, so std compiles once."""
    return tmp_path_factory.mktemp("gocache")


@pytest.fixture
def fresh_proxy(tmp_path: Path) -> Path:
    return build_proxy(tmp_path / "proxy")


@pytest.fixture
def fresh_consumer(tmp_path: Path, fresh_proxy: Path, gocache: Path) -> Path:
    return make_consumer(
        tmp_path / "consumer", fresh_proxy, REQUIRES, gomodcache=tmp_path / "modcache-tidy", gocache=gocache
    )


def _env(tmp_path: Path, goproxy: str, gocache: Path, name: str) -> dict[str, str]:
    home = tmp_path / f"home-{name}"
    home.mkdir(exist_ok=True)
    return go_env(goproxy=goproxy, gomodcache=tmp_path / f"modcache-{name}", gocache=gocache, home=home)


def test_escape_path() -> None:
    assert escape_path("github.com/BurntSushi/toml") == "github.com/!burnt!sushi/toml"
    assert escape_path("example.test/greet") == "example.test/greet"


def test_fixture_modules_found() -> None:
    found = [(m.path, m.version) for m in fixture_modules()]
    assert found == [
        ("example.test/color", "v0.3.0"),
        ("example.test/greet", "v1.0.0"),
        ("example.test/greet", "v1.1.0"),
    ]


def test_build_proxy_layout_is_byte_stable(tmp_path: Path) -> None:
    first = build_proxy(tmp_path / "a")
    second = build_proxy(tmp_path / "b")
    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert "example.test/greet/@v/list" in files
    assert {"example.test/greet/@v/v1.0.0.zip", "example.test/color/@v/v0.3.0.info"} <= set(files)
    assert (first / "example.test/greet/@v/list").read_text() == "v1.0.0\nv1.1.0\n"
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_consumer_builds_and_runs_from_file_proxy(
    tmp_path: Path, fresh_proxy: Path, fresh_consumer: Path, gocache: Path
) -> None:
    gosum = (fresh_consumer / "go.sum").read_text()
    assert "example.test/greet v1.1.0 h1:" in gosum
    assert "example.test/color v0.3.0/go.mod h1:" in gosum
    env = _env(tmp_path, file_proxy_url(fresh_proxy), gocache, "build")
    run_go(["build", "./..."], cwd=fresh_consumer, env=env)
    run_go(["build", "-o", str(tmp_path / "consumer-bin"), "."], cwd=fresh_consumer, env=env)
    out = run_go(["version"], cwd=fresh_consumer, env=env)  # the env is usable for plain commands too
    assert out.stdout.startswith("go version")
    ran = run_go(["run", "."], cwd=fresh_consumer, env=env)
    assert ran.stdout.strip() == "Hello, [red]x[/red]!"


def test_flaky_proxy_fails_then_serves(
    tmp_path: Path, fresh_proxy: Path, fresh_consumer: Path, gocache: Path
) -> None:
    with FlakyProxyServer(fresh_proxy, fail_first=2) as server:
        assert server.url.startswith("http://127.0.0.1:")
        env = _env(tmp_path, server.url, gocache, "flaky")
        first = run_go(["mod", "download"], cwd=fresh_consumer, env=env, check=False)
        assert first.returncode != 0
        assert "503" in first.stderr
        results = [first]
        while server.failures < 2 and len(results) < 5:
            results.append(run_go(["mod", "download"], cwd=fresh_consumer, env=env, check=False))
        final = run_go(["mod", "download"], cwd=fresh_consumer, env=env, check=False)
        assert final.returncode == 0, final.stderr
        assert server.failures == 2
        assert server.requests > 2
        assert any(p.endswith("/example.test/greet/@v/v1.1.0.zip") for p in server.paths)
        # Missing files answer 404, as the proxy protocol expects.
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.url}/example.test/nothing/@v/list", timeout=10)
        assert missing.value.code == 404
        with urllib.request.urlopen(f"{server.url}/example.test/greet/@v/list", timeout=10) as ok:
            assert ok.read() == b"v1.0.0\nv1.1.0\n"
        assert server.failures == 2
    assert (tmp_path / "modcache-flaky/cache/download/example.test/greet/@v/v1.1.0.zip").is_file()


def test_dead_proxy_refuses_connections(tmp_path: Path, fresh_consumer: Path, gocache: Path) -> None:
    env = _env(tmp_path, dead_proxy_url(), gocache, "dead")
    result = run_go(["mod", "download"], cwd=fresh_consumer, env=env, check=False)
    assert result.returncode != 0
    assert "connection refused" in result.stderr.lower(), result.stderr
