"""How a build ended, from what a worker reported (its BuildReport) or from what happened to the worker."""

from __future__ import annotations

from pydantic import ValidationError

from gocaas.errors import FailureClass
from gocaas.report.model import BuildReport
from gocaas.store.builds import ArtifactRecord, BuildState, Outcome, TestRecord

__all__ = ["infra_outcome", "report_outcome"]


def infra_outcome(message: str, kind: str) -> Outcome:
    return Outcome(
        BuildState.FAILED,
        exit_code=3,
        failure_class=FailureClass.INFRASTRUCTURE.value,
        failure_kind=kind,
        message=message,
    )


def report_outcome(report_json: str) -> tuple[Outcome, BuildReport | None]:
    try:
        report = BuildReport.model_validate_json(report_json)
    except ValidationError as e:
        return infra_outcome(f"the worker sent an unreadable report: {e}", "internal"), None
    failure = report.failure
    artifacts = [
        ArtifactRecord(a.name, a.kind, a.goos, a.goarch, a.sha256, a.size, a.path) for a in report.artifacts
    ]
    tests = (
        [TestRecord(t.package, t.name, t.state.value, t.duration_s, t.attempts) for t in report.tests.tests]
        if report.tests
        else []
    )
    return (
        Outcome(
            BuildState.SUCCEEDED if report.status == "succeeded" else BuildState.FAILED,
            exit_code=report.exit_code,
            failure_class=failure.failure_class.value if failure else None,
            failure_kind=failure.kind if failure else None,
            message=failure.message if failure else None,
            report=report_json,
            artifacts=artifacts,
            tests=tests,
        ),
        report,
    )
