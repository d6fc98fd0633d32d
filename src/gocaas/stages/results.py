"""The typed results of the stages that run after the result cache's check. They live apart from their
stages so that assembling a report does not import the stages: a build answered by the result cache never
loads the test, build or packaging code (~35 ms of every warm `gocaas build` or `gocaas test`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gocaas.report.model import Artifact
from gocaas.report.tests import TestReport
from gocaas.spec import Target


@dataclass(frozen=True)
class BuildResult:
    binaries: dict[Target, tuple[Path, ...]]
    version_stamp: str | None


@dataclass(frozen=True)
class PackageResult:
    artifacts: tuple[Artifact, ...]
    checksums: Path


@dataclass(frozen=True)
class TestStageResult:
    __test__ = False
    report: TestReport
