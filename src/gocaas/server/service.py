"""What the routes share: the store's repositories, the executor, metrics, the notifier, and the few rules
that belong to the service rather than to one route (admission, a build's public view, token lookups)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from gocaas.executor.base import Executor, ExecutorState
from gocaas.executor.scheduler import order
from gocaas.pipeline.run import new_build_id
from gocaas.server.metrics import Metrics
from gocaas.server.notify import Notifier
from gocaas.server.schemas import BuildView, FailureView, StageView, SubmitResponse
from gocaas.settings import Settings
from gocaas.source.git import redact
from gocaas.spec import BuildSpec, Target
from gocaas.store.builds import BuildRecord, BuildRepo, BuildState, NewBuild
from gocaas.store.store import Store
from gocaas.store.tenants import Principal, TenantRepo, hash_token

__all__ = ["Service"]

TOKEN_TTL: Final = 5.0
"""Seconds a token lookup is remembered: a revoked token stops working within this."""

QUEUE_TTL: Final = 0.5
"""Seconds a queue snapshot (for positions) is reused: cheap status reads with a thousand builds queued."""


@dataclass
class _Snapshot:
    at: float = 0.0
    positions: dict[str, int] = field(default_factory=dict)


class Service:
    def __init__(
        self, settings: Settings, store: Store, executor: Executor | None, notifier: Notifier
    ) -> None:
        self.settings = settings
        self.store = store
        self.builds = BuildRepo(store)
        self.tenants = TenantRepo(store)
        self.executor = executor
        self.notifier = notifier
        self.default_target = Target.host()
        self.metrics = Metrics(self.builds.count_by_status, notifier.notify, settings.home, settings.min_free)
        self._tokens: dict[str, tuple[Principal | None, float]] = {}
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()

    # --- tokens ----------------------------------------------------------------------------------------
    def remembered(self, token: str) -> tuple[bool, Principal | None]:
        """A recent lookup of `token`, without touching the database: (known, principal)."""
        cached = self._tokens.get(hash_token(token))
        if cached is not None and cached[1] > time.monotonic():
            return True, cached[0]
        return False, None

    def authenticate(self, token: str) -> Principal | None:
        known, principal = self.remembered(token)
        if known:
            return principal
        principal = self.tenants.authenticate(token)
        if len(self._tokens) > 10_000:
            self._tokens.clear()  # bounded: a flood of bad tokens cannot grow it without end
        self._tokens[hash_token(token)] = (principal, time.monotonic() + TOKEN_TTL)
        return principal

    # --- builds ----------------------------------------------------------------------------------------
    def submit(
        self,
        principal: Principal,
        spec: BuildSpec,
        *,
        fingerprint: str,
        priority: int,
        idempotency_key: str | None,
        build_id: str | None = None,
        upload: str | None = None,
        timeout_s: float | None = None,
    ) -> tuple[BuildRecord, bool]:
        record, created = self.builds.submit(
            NewBuild(
                id=build_id or new_build_id(),
                tenant_id=principal.tenant_id,
                spec=spec.model_dump_json(),
                fingerprint=fingerprint,
                priority=priority,
                idempotency_key=idempotency_key,
                upload=upload,
                timeout_s=timeout_s,
            ),
            max_queued=self.settings.server_max_queued,
            max_queued_per_tenant=self.settings.server_max_queued_per_tenant,
        )
        self.metrics.submitted.labels("queued" if created else "existing").inc()
        if created and self.executor is not None:
            self.executor.wake()
        return record, created

    def submitted(self, record: BuildRecord, created: bool, base: str) -> SubmitResponse:
        urls = f"{base}/v1/builds/{record.id}"
        return SubmitResponse(
            build_id=record.id,
            status=record.status.value,
            status_url=urls,
            artifact_url=f"{urls}/artifact",
            log_url=f"{urls}/log",
            existing=not created,
        )

    def executor_state(self) -> ExecutorState:
        if self.executor is None:
            return ExecutorState(workers=0, busy=0, alive=False)
        return self.executor.state()

    def queue_position(self, build_id: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            if now - self._snapshot.at > QUEUE_TTL:
                ordered = order(self.builds.queued(), datetime.now(UTC), self.settings.server_aging_seconds)
                self._snapshot = _Snapshot(now, {b.id: i for i, b in enumerate(ordered, start=1)})
            return self._snapshot.positions.get(build_id)

    def view(self, record: BuildRecord, *, with_stages: bool = True) -> BuildView:
        spec = json.loads(record.spec)
        position = reason = None
        if record.status is BuildState.QUEUED:
            position = self.queue_position(record.id)
            state = self.executor_state()
            if not state.alive or state.workers == 0:
                reason = "no worker can take it: this server runs no executor"
            elif state.busy >= state.workers:
                reason = f"waiting for a free worker ({state.busy} of {state.workers} busy)"
            else:
                reason = "about to start"
            if position is not None:
                reason = f"position {position} in the queue; {reason}"
        report = json.loads(record.report) if record.report is not None else {}
        failed = record.failure_class or record.failure_kind
        return BuildView(
            id=record.id,
            status=record.status.value,
            priority=record.priority,
            attempts=record.attempts,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            stage=record.stage,
            queue_position=position,
            waiting_reason=reason,
            exit_code=record.exit_code,
            failure=FailureView(
                failure_class=record.failure_class,
                kind=record.failure_kind,
                stage=(report.get("failure") or {}).get("stage"),
                message=record.message,
            )
            if failed
            else None,
            message=record.message,
            stages=[
                StageView(name=s.name, status=s.status, duration_s=s.duration_s, skip_reason=s.skip_reason)
                for s in self.builds.stages(record.id)
            ]
            if with_stages and record.status is not BuildState.QUEUED  # a re-queued build starts afresh
            else [],
            source={
                "kind": spec["source"]["kind"],
                "location": None
                if spec["source"]["kind"] == "archive"
                else redact(spec["source"]["location"]),
                "ref": spec["source"].get("ref"),
            },
            targets=[f"{t['goos']}/{t['goarch']}" for t in spec["options"]["targets"]],
            reused_from=report.get("reused_from"),
        )
