"""A gocaas build on a fresh worker against a warm remote cache, and against one that is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gocaas.settings import Settings
from tests.cache.conftest import TOKEN, LiveServer
from tests.conftest import EXAMPLES, BuildFn
from tests.support.goproxy import dead_proxy_url


@pytest.fixture
def warm_remote(build: BuildFn, settings: Settings, tmp_path: Path) -> Iterator[str]:
    assert build(EXAMPLES / "hello", out=tmp_path / "warm").failure is None  # the session's store is warm
    server = LiveServer(settings.cache_dir)
    try:
        yield server.url
    finally:
        server.stop()


def test_fresh_worker_is_served_by_the_remote(
    build: BuildFn,
    fresh_settings,
    warm_remote: str,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    worker = fresh_settings(cache_remote_url=warm_remote, cache_remote_token=TOKEN)
    assert not (worker.cache_dir / "objects").exists()
    report = build(EXAMPLES / "hello", settings_=worker, out=tmp_path / "out")
    assert report.failure is None, report.failure
    assert report.cache is not None and report.cache.remote_hits > 0
    assert report.cache.remote_bytes_down > 0 and report.cache.remote_errors == 0
    assert any((worker.cache_dir / "objects").rglob("*"))  # the local disk was filled


def test_a_remote_that_is_down_never_fails_the_build(build: BuildFn, fresh_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    worker = fresh_settings(cache_remote_url=dead_proxy_url(), cache_remote_token=TOKEN)
    report = build(EXAMPLES / "hello", settings_=worker, out=tmp_path / "out", vet=False)
    assert report.failure is None, report.failure
    assert report.cache is not None and report.cache.remote_hits == 0
    assert report.cache.breaker_opens > 0 or report.cache.remote_errors > 0
