"""A full disk fails the build as the infrastructure's (`disk_full`, exit 3), whoever hit it (the go
command or gocaas writing files), and leaves nothing half written. The go command's side is in
test_classify.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gocaas.errors import FailureClass
from gocaas.settings import Settings
from tests.conftest import EXAMPLES, BuildFn
from tests.support.server import server_home


def test_an_output_directory_with_no_room_is_the_machines_fault(build: BuildFn, small_disk: Path) -> None:
    with (small_disk / "filler").open("wb") as f:  # 256 KiB left: less than the binary
        f.write(b"\0" * ((16 << 20) - (256 << 10)))
    out = small_disk / "out"
    report = build(EXAMPLES / "hello", out=out)
    failure = report.failure
    assert failure is not None and report.exit_code == 3
    assert (failure.failure_class, failure.kind, failure.stage) == (
        FailureClass.INFRASTRUCTURE,
        "disk_full",
        "package",
    ), failure
    assert failure.message.startswith(f"out of disk space: the package stage writing {out}/"), failure.message
    free = failure.message.rsplit(" has ", 1)[1]  # what is free once its temp file is gone: < 1 MiB
    assert (
        f"(the disk holding {out}/" in failure.message
        and free.startswith("0.")
        and free.endswith(" MiB free now)")
    )
    left = sorted(p.name for p in out.iterdir())
    assert left == ["junit.xml"], "the test report (written whole), and no half-written binary or temp file"


def test_a_data_directory_with_no_room_fails_the_build_as_disk_full(
    build: BuildFn, settings: Settings, small_disk: Path
) -> None:
    """The data directory's disk fills up: whatever stage first finds no room (here the sandbox's copy of the
    go command, wrapped in its own error), the build fails as disk_full, not as that stage's own trouble."""
    home = server_home(small_disk, settings)  # the session's warm caches, linked; the rest on the small disk
    worker = Settings(**(settings.model_dump() | {"home": home, "sandbox": "on"}))
    with (small_disk / "filler").open("wb") as f:  # room for the build's logs, not for a copy of go
        f.write(b"\0" * (shutil.disk_usage(small_disk).free - (64 << 10)))
    report = build(EXAMPLES / "hello", settings_=worker, out=small_disk.parent / "out")
    failure = report.failure
    assert failure is not None and report.exit_code == 3
    assert (failure.failure_class, failure.kind) == (FailureClass.INFRASTRUCTURE, "disk_full"), failure
    assert "No space left on device" in failure.message and f"(the disk holding {home}" in failure.message


def test_a_result_cache_with_no_room_does_not_fail_a_build_that_succeeded(
    build: BuildFn,
    fresh_settings,  # type: ignore[no-untyped-def]
    settings: Settings,
    small_disk: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The result cache is a shortcut for the next identical build: when it cannot keep this one (its disk
    is full), the build still succeeds, says why on stderr, and leaves no half-stored entry."""
    worker: Settings = fresh_settings(reuse_results=True)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    (worker.home / "cache").symlink_to(settings.cache_dir)  # the session's warm store
    (worker.home / "results").symlink_to(small_disk)  # only the result cache on the full disk
    with (small_disk / "filler").open("wb") as f:  # room for a directory or two, not for a binary
        f.write(b"\0" * (shutil.disk_usage(small_disk).free - (64 << 10)))
    report = build(EXAMPLES / "hello", settings_=worker, out=tmp_path / "out")
    assert report.failure is None and report.exit_code == 0, report.failure
    assert (tmp_path / "out" / "hello_linux_amd64").is_file()
    assert f"gocaas: the result cache could not keep build {report.build_id}: " in capfd.readouterr().err
    kept = [p for p in small_disk.rglob("*") if p.name != "filler" and p.is_file()]
    assert kept == [], "nothing half stored"
    assert (worker.builds_dir / report.build_id / "report.json").is_file()
