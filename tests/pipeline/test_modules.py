"""The modules stage against proxies the tests build: retries, the offline fallback, go.sum enforcement."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gocaas.errors import FailureClass
from tests.conftest import BuildFn
from tests.support.goproxy import FlakyProxyServer, dead_proxy_url, file_proxy_url


def _modules_stage(report):  # type: ignore[no-untyped-def]
    return next(s for s in report.stages if s.name == "modules")


def test_dependencies_from_the_proxy(build: BuildFn, consumer: Path, tmp_path: Path) -> None:
    report = build(consumer, out=tmp_path / "out")
    assert report.failure is None, report.failure
    ran = subprocess.run(
        [str(tmp_path / "out" / "consumer_linux_amd64")], capture_output=True, text=True, check=True
    )
    assert ran.stdout.strip()  # greet + color linked in


def test_transient_5xx_is_retried(build: BuildFn, consumer: Path, proxy: Path, fresh_settings) -> None:
    with FlakyProxyServer(proxy, fail_first=2) as server:
        settings = fresh_settings(goproxy=server.url, download_attempts=4)
        report = build(consumer, settings_=settings)
        assert server.failures == 2
    assert report.failure is None, report.failure
    log = Path(_modules_stage(report).log_path).read_text()
    # go fetches in parallel, so both 503s may land in one attempt: at least one retry, then success.
    assert "transient failure (attempt 1 of 4)" in log
    assert "503 Service Unavailable" in log


def test_proxy_failing_beyond_retries_is_infrastructure(
    build: BuildFn, consumer: Path, proxy: Path, fresh_settings
) -> None:
    with FlakyProxyServer(proxy, fail_first=1000, status=502) as server:
        settings = fresh_settings(goproxy=server.url, download_attempts=3)
        report = build(consumer, settings_=settings)
        assert server.failures >= 3
    assert report.failure is not None
    assert report.failure.failure_class is FailureClass.INFRASTRUCTURE
    assert report.failure.kind == "network"
    assert report.exit_code == 3


def test_unreachable_proxy_continues_offline_from_the_module_cache(
    build: BuildFn, consumer: Path, proxy: Path, fresh_settings
) -> None:
    warm = fresh_settings()
    assert build(consumer, settings_=warm).failure is None  # fills this data directory's module cache
    down = fresh_settings(goproxy=dead_proxy_url())
    report = build(consumer, settings_=down)
    assert report.failure is None, report.failure
    notes = _modules_stage(report).notes
    assert any("module cache" in note for note in notes), notes


def test_unreachable_proxy_with_an_empty_cache_is_infrastructure(
    build: BuildFn, consumer: Path, fresh_settings
) -> None:
    report = build(consumer, settings_=fresh_settings(goproxy=dead_proxy_url()))
    assert report.failure is not None
    assert (report.failure.failure_class, report.failure.kind) == (FailureClass.INFRASTRUCTURE, "network")


def test_tampered_go_sum_is_a_checksum_mismatch(build: BuildFn, consumer: Path, fresh_settings) -> None:
    gosum = consumer / "go.sum"
    lines = gosum.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if "example.test/greet" in line and "/go.mod" not in line)
    module, version, _digest = lines[index].split()
    lines[index] = f"{module} {version} h1:{'A' * 43}="
    gosum.write_text("\n".join(lines) + "\n")
    for settings in (fresh_settings(), None):  # a fresh download, and a module already in the cache
        report = build(consumer, settings_=settings)
        assert report.failure is not None
        assert report.failure.kind == "checksum_mismatch", report.failure
        assert report.exit_code == 1
        assert "SECURITY ERROR" in report.failure.message or "checksum mismatch" in report.failure.message


def test_requirement_without_go_sum_entry_is_refused(build: BuildFn, consumer: Path) -> None:
    gosum = consumer / "go.sum"
    kept = [line for line in gosum.read_text().splitlines() if "example.test/color" not in line]
    gosum.write_text("\n".join(kept) + "\n")
    before = gosum.read_bytes()
    report = build(consumer)
    assert report.failure is not None
    assert report.failure.kind == "missing_go_sum", report.failure
    assert "example.test/color" in report.failure.message
    assert gosum.read_bytes() == before  # the user's copy is never written


def test_module_not_on_the_proxy(build: BuildFn, consumer: Path, proxy: Path) -> None:
    gomod = consumer / "go.mod"
    gomod.write_text(gomod.read_text().replace("example.test/color v0.3.0", "example.test/color v0.9.9"))
    report = build(consumer)
    assert report.failure is not None
    assert report.failure.failure_class is FailureClass.USER
    assert file_proxy_url(proxy)  # the proxy is there; the version is not
