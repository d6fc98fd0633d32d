"""The build report and the files derived from it (checksums; later JUnit and coverage)."""

from gocaas.report.model import (
    SCHEMA_VERSION,
    Artifact,
    BuildReport,
    BuildStatus,
    Failure,
    SourceInfo,
    StageRecord,
    StageStatus,
)

__all__ = [
    "SCHEMA_VERSION",
    "Artifact",
    "BuildReport",
    "BuildStatus",
    "Failure",
    "SourceInfo",
    "StageRecord",
    "StageStatus",
]
