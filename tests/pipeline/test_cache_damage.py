"""A build cache whose entries name the wrong outputs: the go command's failure is recognised as the cache's,
the command is re-run with every entry it uses rebuilt, and the store is repaired; the module's own errors
are still the module's and are not re-run.

The damage is made the way a lying remote or a damaged store makes it: each action entry of a warm store is
given the next entry's output (objects stay intact and correctly named, so only the mapping is wrong).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gocaas.cache.signing import EntrySigner, generate
from gocaas.errors import FailureClass
from gocaas.go.diagnostics import parse_diagnostics
from gocaas.go.runner import CommandResult
from gocaas.go.toolchain import Toolchain
from gocaas.pipeline.cachedamage import cache_damage
from gocaas.pipeline.classify import classify
from gocaas.report.model import BuildReport
from gocaas.settings import Settings
from tests.cache.conftest import TOKEN, LiveServer
from tests.cache.test_signing import signed_copy
from tests.conftest import EXAMPLES, BuildFn

DAMAGE_NOTE = "a damaged build cache, not the module's code"


def damaged_copy(store: Path, dest: Path, namespace: str) -> int:
    """dest: store's objects (hard links: they are never written in place) and its namespace's action
    entries, each holding the next entry's line. Returns the number of entries."""
    for path in (store / "objects").rglob("*"):
        target = dest / path.relative_to(store)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    entries = sorted(p for p in (store / "actions" / namespace).rglob("*") if p.is_file())
    lines = [p.read_text() for p in entries]
    for path, line in zip(entries, lines[1:] + lines[:1], strict=True):
        target = dest / path.relative_to(store)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(line)
    return len(entries)


def stats_of(settings: Settings, report: BuildReport) -> list[dict[str, object]]:
    path = settings.builds_dir / report.build_id / "cache-stats.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def notes_of(report: BuildReport) -> list[str]:
    return [note for stage in report.stages for note in stage.notes]


@pytest.fixture
def healthy(build: BuildFn, settings: Settings, tmp_path: Path) -> BuildReport:
    """examples/hello built on the session's store, which also warms it for the damaged copies."""
    report = build(EXAMPLES / "hello", out=tmp_path / "healthy")
    assert report.failure is None, report.failure
    return report


def binaries(report: BuildReport) -> dict[str, str]:
    return {a.name: a.sha256 for a in report.artifacts if a.kind == "binary"}


def test_a_damaged_local_store_is_rebuilt_and_the_build_succeeds(
    build: BuildFn,
    settings: Settings,
    fresh_settings,  # type: ignore[no-untyped-def]
    healthy: BuildReport,
    tmp_path: Path,
) -> None:
    worker: Settings = fresh_settings()
    assert damaged_copy(settings.cache_dir, worker.cache_dir, worker.cache_namespace) > 100

    report = build(EXAMPLES / "hello", settings_=worker, out=tmp_path / "out")
    assert report.failure is None, report.failure
    assert any(DAMAGE_NOTE in note for note in notes_of(report)), notes_of(report)
    assert any(line["refill"] for line in stats_of(worker, report))
    assert report.cache is not None and report.cache.refills >= 1
    assert binaries(report) == binaries(healthy), "the same binary as from a healthy cache"

    again = build(EXAMPLES / "hello", settings_=worker, out=tmp_path / "again")
    assert again.failure is None, again.failure
    assert not any(DAMAGE_NOTE in note for note in notes_of(again)), "the entries it used were rewritten"
    assert not any(line["refill"] for line in stats_of(worker, again))
    assert again.cache is not None and again.cache.refills == 0
    assert binaries(again) == binaries(healthy)


@pytest.fixture
def damaged_remote(healthy: BuildReport, settings: Settings, tmp_path: Path) -> Iterator[str]:
    store = tmp_path / "remote-store"
    damaged_copy(settings.cache_dir, store, settings.cache_namespace)
    server = LiveServer(store)
    try:
        yield server.url
    finally:
        server.stop()


def test_a_remote_with_swapped_entries_does_not_fail_a_fresh_worker(
    build: BuildFn,
    fresh_settings,  # type: ignore[no-untyped-def]
    damaged_remote: str,
    healthy: BuildReport,
    tmp_path: Path,
) -> None:
    worker: Settings = fresh_settings(cache_remote_url=damaged_remote, cache_remote_token=TOKEN)
    report = build(EXAMPLES / "hello", settings_=worker, out=tmp_path / "out", vet=False)
    assert report.failure is None, report.failure
    assert any(DAMAGE_NOTE in note and "without the remote" in note for note in notes_of(report))
    assert binaries(report) == binaries(healthy)
    stats = stats_of(worker, report)
    assert stats[0].get("remote_hits", 0) > 0, "the damaged entries came from the remote"
    after = stats[next(i for i, line in enumerate(stats) if line["refill"]) :]
    assert all("remote_requests" not in line for line in after), "no remote after the damage was seen"


def write_module(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"go.mod": "module example.test/broken\n\ngo 1.22\n", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"main.go": 'package main\n\nimport "strngs"\n\nfunc main() { strngs.ToUpper("") }\n'}, "strngs"),
        (
            {
                "a/a.go": 'package a\n\nimport _ "example.test/broken/b"\n',
                "b/b.go": 'package b\n\nimport _ "example.test/broken/a"\n',
                "main.go": 'package main\n\nimport _ "example.test/broken/a"\n\nfunc main() {}\n',
            },
            "import cycle not allowed",
        ),
    ],
    ids=["missing-std-import", "own-import-cycle"],
)
def test_the_modules_own_errors_are_not_blamed_on_the_cache(
    build: BuildFn, settings: Settings, tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    source = write_module(tmp_path / "src", files)
    report = build(source, out=tmp_path / "out", vet=False)
    assert report.failure is not None
    assert report.failure.failure_class is FailureClass.USER, report.failure
    assert expected in report.failure.message
    assert not any(DAMAGE_NOTE in note for note in notes_of(report)), "no re-run over a rebuilt cache"
    assert not any(line["refill"] for line in stats_of(settings, report))


@pytest.mark.parametrize(
    ("stderr", "damaged"),
    [
        ("GOROOT/src/sync/pool.go:9:2: package runtime is not in std", True),
        ("pattern ./...: corrupt index", True),
        ('# internal/sync\n<autogenerated>:1: mismatched import path, have "a" (0x1), want "b" (0x2)', True),
        ('vet: decoding facts for "encoding": unexpected EOF', True),
        ("!<arch>\n__.PKGDEF       0  \n$$B\nu\x00\x00\x00T\x04", True),
        ("package m\n\timports io from a.go\n\timports runtime from p.go: import cycle not allowed", True),
        ("greeting/greeting.go:4:8: package strings is not in std (GOROOT/src/strings)", True),
        ("main.go:3:8: package strngs is not in std (GOROOT/src/strngs)", False),
        ("a.go:4:8: package strings is not in std (GOROOT/src/strings)\nmain.go:5:2: undefined: x", False),
        ("package m/a\n\timports m/b from a.go\n\timports m/a from b.go: import cycle not allowed", False),
        ("main.go:5:2: undefined: x\nGOROOT/src/fmt/print.go:1:1: a note", False),
        ("build constraints exclude all Go files in /src/x", False),
    ],
)
def test_what_counts_as_damage(toolchain: Toolchain, stderr: str, damaged: bool) -> None:
    messages = stderr.replace("GOROOT", str(toolchain.goroot))
    found = cache_damage(messages, parse_diagnostics(messages, Path("/src")), toolchain.goroot)
    assert (found is not None) is damaged, found


def test_a_printed_binary_is_not_an_out_of_memory(toolchain: Toolchain) -> None:
    """A cached archive printed as an error holds the runtime's strings, "cannot allocate memory" too."""
    dump = "!<arch>\n\x00\x01 found pointer to free objectcannot allocate memoryruntime: out of memory\x02\n"
    result = CommandResult(("go", "build"), 1, "", dump, 0.1)
    error = classify(result, stage="build", module_root=Path("/src"), goroot=toolchain.goroot)
    assert error.kind == "toolchain_or_cache", error


def test_with_signed_entries_a_worker_never_takes_the_swapped_ones(
    build: BuildFn,
    settings: Settings,
    fresh_settings,  # type: ignore[no-untyped-def]
    healthy: BuildReport,
    tmp_path: Path,
) -> None:
    """The same swap as above, but signed by a trusted writer and checked by the worker (signing.py): the
    swapped entries are refused before go sees them, so nothing needs rebuilding over a damaged cache."""
    key = tmp_path / "signing.key"
    public = generate(str(key))
    signed_copy(settings.cache_dir, tmp_path / "remote-store", EntrySigner.from_file(str(key)), rotate=True)
    server = LiveServer(tmp_path / "remote-store")
    try:
        worker: Settings = fresh_settings(
            cache_remote_url=server.url, cache_remote_token=TOKEN, cache_remote_verify_keys=(public.hex(),)
        )
        report = build(EXAMPLES / "hello", settings_=worker, out=tmp_path / "out", vet=False)
    finally:
        server.stop()
    assert report.failure is None, report.failure
    assert not any(DAMAGE_NOTE in note for note in notes_of(report))
    assert report.cache is not None and report.cache.refills == 0 and report.cache.remote_bad_signatures > 0
    assert binaries(report) == binaries(healthy)
