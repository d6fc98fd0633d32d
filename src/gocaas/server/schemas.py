"""The API's request and response bodies. Requests forbid unknown fields: a typo is an error."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gocaas.executor.scheduler import MAX_PRIORITY
from gocaas.spec import ArchiveFormat, Target

__all__ = [
    "ApiError",
    "ArtifactView",
    "BuildList",
    "BuildOptionsIn",
    "BuildRequest",
    "BuildView",
    "CompatBuildRequest",
    "FailureView",
    "GitSourceIn",
    "StageView",
    "SubmitResponse",
]

_WORD = r"^[a-z0-9]{1,32}$"
GitUrl = Annotated[str, Field(min_length=1, max_length=2048, description="https://, ssh:// or git@host:path")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "yes" is not a bool, "5" not a priority


class CompatBuildRequest(_Request):
    """The compile-as-a-service form: one git ref, one target."""

    git_url: GitUrl
    ref: str | None = Field(default=None, max_length=256, description="Branch, tag or commit; default HEAD.")
    go_version: str | None = Field(default=None, max_length=32, description="e.g. 1.25 or 1.25.5")
    target_os: Annotated[str, Field(pattern=_WORD, description="GOOS, e.g. linux")]
    target_arch: Annotated[str, Field(pattern=_WORD, description="GOARCH, e.g. amd64")]


class GitSourceIn(_Request):
    git_url: GitUrl
    ref: str | None = Field(default=None, max_length=256)


class BuildOptionsIn(_Request):
    go_version: str | None = Field(default=None, max_length=32)
    targets: list[str] = Field(
        default_factory=list, max_length=64, description="GOOS/GOARCH; default: the server's"
    )
    vet: bool = True
    tests: bool = True
    race: bool = False
    coverage: bool = False
    version: str | None = Field(default=None, max_length=128, description="Stamped as -X main.version")
    strip: bool = False
    cgo: bool = False
    archives: ArchiveFormat | None = None
    reuse: bool = True
    priority: int = Field(default=5, ge=0, le=MAX_PRIORITY, description="0 lowest, 9 highest")
    timeout: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds for the whole build; at most the server's build_timeout.",
    )

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for text in value:
            Target.parse(text)  # ValueError names the bad one
        return value


class BuildRequest(BuildOptionsIn):
    """The full form. As JSON it needs `source`; as multipart, the `archive` file part replaces it and
    this object comes in the `spec` part."""

    source: GitSourceIn | None = None


class SubmitResponse(BaseModel):
    build_id: str
    status: str
    status_url: str
    artifact_url: str
    log_url: str
    existing: bool = Field(description="True when an identical or same-key build was returned instead.")


class StageView(BaseModel):
    name: str
    status: str
    duration_s: float | None = None
    skip_reason: str | None = None


class FailureView(BaseModel):
    failure_class: str | None = Field(serialization_alias="class")
    kind: str | None
    stage: str | None = Field(default=None, description="The stage that failed, if one did.")
    message: str | None


class BuildView(BaseModel):
    id: str
    status: str
    priority: int
    attempts: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stage: str | None = None
    queue_position: int | None = None
    waiting_reason: str | None = Field(default=None, description="Why a queued build has not started.")
    exit_code: int | None = None
    failure: FailureView | None = None
    message: str | None = None
    stages: list[StageView] = Field(default_factory=list)
    source: dict[str, str | None]
    targets: list[str]
    reused_from: str | None = None


class BuildList(BaseModel):
    builds: list[BuildView]
    next_before: str | None = Field(description="Pass as ?before= for the next page; null at the end.")


class ArtifactView(BaseModel):
    name: str
    kind: str
    goos: str | None
    goarch: str | None
    sha256: str
    size: int
    url: str


class ApiError(BaseModel):
    error: str
    field: str | None = None
