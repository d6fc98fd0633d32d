"""What the client sends and reads back. Responses ignore fields this client does not know, so a newer
server does not break an older client; the raw JSON of a build is kept for `--json`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Artifact", "Build", "BuildOptions", "Failure", "LogEnd", "Stage", "Submitted"]

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class BuildOptions:
    """A build request's options (the server's BuildRequest without `source`); None: the server's default."""

    targets: tuple[str, ...] = ()
    go_version: str | None = None
    tests: bool = True
    race: bool = False
    coverage: bool = False
    vet: bool = True
    version: str | None = None
    priority: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "targets": list(self.targets),
            "tests": self.tests,
            "race": self.race,
            "coverage": self.coverage,
            "vet": self.vet,
        }
        optional = {"go_version": self.go_version, "version": self.version, "priority": self.priority}
        body |= {k: v for k, v in optional.items() if v is not None}
        return body | self.extra


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Submitted(_Response):
    build_id: str
    status: str
    status_url: str
    log_url: str
    existing: bool = False


class Stage(_Response):
    name: str
    status: str  # running | ok | failed | skipped
    duration_s: float | None = None
    skip_reason: str | None = None


class Failure(_Response):
    failure_class: str | None = Field(default=None, alias="class")
    kind: str | None = None
    message: str | None = None


class Build(_Response):
    id: str
    status: str
    attempts: int = 0
    created_at: datetime | None = None
    stage: str | None = None
    queue_position: int | None = None
    waiting_reason: str | None = None
    exit_code: int | None = None
    failure: Failure | None = None
    message: str | None = None
    stages: list[Stage] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list)
    reused_from: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def of(cls, data: dict[str, Any]) -> Build:
        build = cls.model_validate(data)
        build.raw = data
        return build


class Artifact(_Response):
    name: str
    kind: str
    goos: str | None = None
    goarch: str | None = None
    sha256: str
    size: int
    url: str


@dataclass(frozen=True)
class LogEnd:
    """The log stream's last event: how the build ended."""

    status: str
    exit_code: int | None
