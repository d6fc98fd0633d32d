"""The test part of a report: per-test and per-package results, the summary, coverage. Written by the test
stage, read by the JUnit writer, the CLI view and (later) the server."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TestState(StrEnum):
    __test__: ClassVar[bool] = False  # not a pytest class

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    FLAKY = "flaky"  # failed, then passed when re-run alone


class TestResult(_Model):
    """One test or subtest (name "TestX/case"), after any re-runs."""

    __test__: ClassVar[bool] = False  # not a pytest class

    package: str
    name: str
    state: TestState
    duration_s: float = 0.0
    output: str = Field(default="", description="The last attempt's output (trimmed).")
    attempts: int = 1
    flaky_failures: list[str] = Field(
        default_factory=list, description="Output of each failed attempt of a test that then passed."
    )
    quarantined: bool = False
    failure_kind: str | None = Field(default=None, description="failed | panic | timeout")


class PackageState(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # not selected (e.g. --changed-since) or no tests
    NO_TESTS = "no_tests"


class PackageResult(_Model):
    package: str
    state: PackageState
    duration_s: float = 0.0
    cached: bool = False
    shuffle_seed: int | None = None
    failure_kind: str | None = Field(
        default=None, description="failed | build_failed | timeout | panic | testmain_exit"
    )
    output: str = Field(default="", description="Package-level output: build errors, TestMain, panics.")
    coverage_percent: float | None = None


class SlowTest(_Model):
    package: str
    name: str
    duration_s: float


class SkippedPackage(_Model):
    package: str
    reason: str


class TestSummary(_Model):
    __test__: ClassVar[bool] = False  # not a pytest class

    total: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    flaky: int = 0
    quarantined_failures: int = 0
    packages_without_tests: list[str] = Field(default_factory=list)
    slowest: list[SlowTest] = Field(default_factory=list)
    failures: list[TestResult] = Field(default_factory=list)
    not_run: list[SkippedPackage] = Field(default_factory=list, description="Packages left out, and why.")


class CoverageReport(_Model):
    total_percent: float
    packages: dict[str, float]
    profile_path: str | None = None
    html_path: str | None = None


class TestReport(_Model):
    __test__: ClassVar[bool] = False  # not a pytest class

    summary: TestSummary
    packages: list[PackageResult] = Field(default_factory=list)
    tests: list[TestResult] = Field(default_factory=list)
    coverage: CoverageReport | None = None
    junit_path: str | None = None
    shuffle: str = Field(
        default="off", description='"off", or the seed(s) go used: replay with --shuffle SEED'
    )
