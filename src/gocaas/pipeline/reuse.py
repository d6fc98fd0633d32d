"""The runner's side of the result cache: turning a cached result into this build's report, and storing a
successful build's report and files for the next identical one."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from gocaas.cache.results import ResultCache, trim
from gocaas.report.model import BuildReport, StageRecord
from gocaas.settings import Settings
from gocaas.stages.reuse import ResultHit, ResultKey


def _relocate(path: str | None, out_dir: Path) -> str | None:
    return str(out_dir / Path(path).name) if path else None


def reused_report(
    hit: ResultHit,
    *,
    build_id: str,
    out_dir: Path,
    stages: list[StageRecord],
    started_at: datetime,
    finished_at: datetime,
    duration_s: float,
) -> BuildReport:
    document = {k: v for k, v in hit.cached.document.items() if not k.startswith("_")}
    earlier = BuildReport.model_validate(document)
    artifacts = [a.model_copy(update={"path": _relocate(a.path, out_dir)}) for a in earlier.artifacts]
    tests = earlier.tests
    if tests is not None:
        coverage = tests.coverage
        if coverage is not None:
            coverage = coverage.model_copy(
                update={
                    "profile_path": _relocate(coverage.profile_path, out_dir),
                    "html_path": _relocate(coverage.html_path, out_dir),
                }
            )
        tests = tests.model_copy(
            update={"junit_path": _relocate(tests.junit_path, out_dir), "coverage": coverage}
        )
    return earlier.model_copy(
        update={
            "build_id": build_id,
            "started_at": started_at,
            "finished_at": finished_at,
            "duration_s": duration_s,
            "stages": stages,
            "artifacts": artifacts,
            "checksums_file": _relocate(earlier.checksums_file, out_dir),
            "tests": tests,
            "reused_from": earlier.reused_from or earlier.build_id,
        }
    )


def remember(settings: Settings, key: ResultKey, report: BuildReport) -> None:
    """Store a successful build under its key, with every file its report names."""
    files = [Path(a.path) for a in report.artifacts]
    if report.checksums_file:
        files.append(Path(report.checksums_file))
    if report.tests is not None:
        if report.tests.junit_path:
            files.append(Path(report.tests.junit_path))
        if report.tests.coverage is not None:
            files += [
                Path(p) for p in (report.tests.coverage.profile_path, report.tests.coverage.html_path) if p
            ]
    if all(path.is_file() for path in files):
        ResultCache(settings.results_dir).store(key.key, report.model_dump(mode="json", by_alias=True), files)
        trim(settings.results_dir.parent, settings.results_max_size or None, settings.min_free)
