"""BuildReport: the machine-readable outcome of a build (`gocaas build --json`). Documented in the README;
bump SCHEMA_VERSION on any incompatible change."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from gocaas.errors import FailureClass
from gocaas.go.diagnostics import Diagnostic
from gocaas.report.tests import TestReport

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class BuildStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StageRecord(_Model):
    name: str
    status: StageStatus
    skip_reason: str | None = None
    duration_s: float = 0.0
    log_path: str | None = Field(default=None, description="The stage's captured log (go's output).")
    notes: list[str] = Field(default_factory=list, description="Things worth knowing, e.g. offline mode.")


class Artifact(_Model):
    name: str
    path: str
    goos: str | None = None
    goarch: str | None = None
    kind: str = Field(default="binary", description="binary | archive | checksums")
    sha256: str
    size: int


class Failure(_Model):
    failure_class: FailureClass = Field(alias="class", serialization_alias="class")
    kind: str = Field(
        description="compile_error, vet_finding, missing_go_sum, checksum_mismatch, bad_input, "
        "network, toolchain, timeout, out_of_memory, killed, ..."
    )
    stage: str | None = None
    message: str
    diagnostics: list[Diagnostic] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResourceLimits(_Model):
    """The limits the build's go test commands ran under (gocaas.go.cgroups)."""

    memory_bytes: int | None = Field(description="null: no memory limit")
    pids: int | None = Field(description="processes and threads; null: no limit")
    cgroup_version: int


class CacheUse(_Model):
    """What this build's go commands got from the shared build cache (GOCACHEPROG)."""

    go_commands: int = 0
    gets: int = 0
    hits: int = 0
    misses: int = 0
    hit_bytes: int = 0
    puts: int = 0
    put_bytes: int = 0
    put_new_bytes: int = 0
    errors: int = 0
    corrupt: int = 0
    # go commands re-run with every entry rebuilt (cacheprog --refill): their first run's failure pointed at
    # a damaged cache (pipeline/cachedamage.py)
    refills: int = 0
    # go commands re-run without the cache program, after it failed them (a put it could not store, a crash)
    bypasses: int = 0
    # go commands served by a resident cache program (cache_resident, gocaas.cache.resident)
    resident_served: int = 0
    # The remote tier (cache_remote_url): hits it served (inside `hits`), bytes each way, failures.
    remote_hits: int = 0
    remote_misses: int = 0
    remote_skipped: int = 0
    remote_bytes_down: int = 0
    remote_bytes_up: int = 0
    uploads: int = 0
    upload_skipped: int = 0
    upload_dropped: int = 0
    remote_errors: int = 0
    remote_requests: int = 0
    breaker_opens: int = 0
    # Prefetch (gocaas.cache.prefetch): objects and bytes streamed in, hits that waited for the stream.
    prefetched: int = 0
    prefetch_bytes: int = 0
    prefetch_hits: int = 0
    traces_sent: int = 0
    # Signed entries (gocaas.cache.signing), with verify keys: remote entries refused unsigned, or with a
    # signature none of the keys made.
    remote_unsigned: int = 0
    remote_bad_signatures: int = 0

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.gets if self.gets else 0.0


class SourceInfo(_Model):
    kind: str
    location: str
    ref: str | None = None
    digest: str | None = None
    file_count: int | None = None
    commit: str | None = None


class BuildReport(_Model):
    schema_version: int = SCHEMA_VERSION
    build_id: str
    status: BuildStatus
    exit_code: int
    source: SourceInfo
    go_version: str | None = None
    toolchain_origin: str | None = None
    version_stamp: str | None = None
    targets: list[str]
    started_at: datetime
    finished_at: datetime
    duration_s: float
    stages: list[StageRecord]
    artifacts: list[Artifact] = Field(default_factory=list)
    checksums_file: str | None = None
    failure: Failure | None = None
    tests: TestReport | None = Field(default=None, description="The test stage's results, when it ran.")
    cache: CacheUse | None = Field(default=None, description="Build cache hits, misses and bytes.")
    sandboxed: bool | None = Field(
        default=None,
        description="Whether the go commands after the modules stage ran sandboxed; null: none ran.",
    )
    limits: ResourceLimits | None = Field(
        default=None, description="The resource limits of its go test commands; null: none ran, or none."
    )
    reused_from: str | None = Field(
        default=None, description="The earlier identical build whose result this is (result cache)."
    )

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, by_alias=True)
