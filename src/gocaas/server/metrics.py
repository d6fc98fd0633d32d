"""Prometheus metrics of the service, in a registry of its own (one per app, so tests can run several).

Counters and histograms are fed by the executor's observer calls; queue depth and running builds are
read from the database when /metrics is scraped, so they are right even after a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gocaas.cache.diskspace import MinFree
from gocaas.cache.server_metrics import disk_gauges
from gocaas.report.model import BuildReport
from gocaas.store.builds import BuildRecord

__all__ = ["Metrics"]

_STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class _QueueCollector(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._counts()
        depth = GaugeMetricFamily("gocaas_queue_depth", "Builds waiting for a worker.")
        depth.add_metric([], counts.get("queued", 0))
        running = GaugeMetricFamily("gocaas_builds_running", "Builds running now.")
        running.add_metric([], counts.get("running", 0))
        yield depth
        yield running


class _DiskCollector(Collector):
    """The data directory's disk, read when scraped: a full one fails builds (disk_full) and uploads (507)."""

    def __init__(self, data_dir: Path, min_free: MinFree | None) -> None:
        self._data_dir, self._min_free = data_dir, min_free

    def collect(self) -> Iterator[Metric]:
        return disk_gauges("gocaas_data_disk", str(self._data_dir), self._min_free)


class Metrics:
    """The service's metrics; also the executor's BuildObserver for the parts it feeds."""

    def __init__(
        self,
        counts: Callable[[], dict[str, int]],
        notify: Callable[[str], None],
        data_dir: Path | None = None,
        min_free: MinFree | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._gets = self._hits = 0
        self._notify = notify
        self.builds = Counter(
            "gocaas_builds_finished",
            "Builds finished, by status and failure class.",
            ["status", "failure_class"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "gocaas_stage_duration_seconds",
            "Time each pipeline stage took.",
            ["stage", "status"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.cache_gets = Counter(
            "gocaas_cache_gets",
            "Build cache lookups by go commands of finished builds.",
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "gocaas_cache_hits", "Build cache lookups that hit.", registry=self.registry
        )
        self.cache_hit_ratio = Gauge(
            "gocaas_cache_hit_ratio",
            "Build cache hits / lookups since the server started.",
            registry=self.registry,
        )
        self.result_reuses = Counter(
            "gocaas_result_reuses", "Builds answered from the result cache.", registry=self.registry
        )
        self.workers = Gauge("gocaas_workers", "Worker processes.", registry=self.registry)
        self.workers_busy = Gauge(
            "gocaas_workers_busy", "Worker processes running a build.", registry=self.registry
        )
        self.worker_utilisation = Gauge(
            "gocaas_worker_utilisation", "Busy workers / workers.", registry=self.registry
        )
        self.submitted = Counter(
            "gocaas_builds_submitted", "Build requests, by outcome.", ["outcome"], registry=self.registry
        )
        self.registry.register(_QueueCollector(counts))
        if data_dir is not None:
            self.registry.register(_DiskCollector(data_dir, min_free))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- BuildObserver ---------------------------------------------------------------------------------
    def build_changed(self, build_id: str) -> None:
        self._notify(build_id)

    def stage_finished(self, stage: str, status: str, duration_s: float | None) -> None:
        if status != "skipped" and duration_s is not None:
            self.stage_seconds.labels(stage, status).observe(duration_s)

    def build_finished(self, record: BuildRecord, report: BuildReport | None) -> None:
        self.builds.labels(record.status.value, record.failure_class or "").inc()
        if report is not None and report.reused_from:
            self.result_reuses.inc()
        if report is not None and report.cache is not None and report.cache.gets:
            self.cache_gets.inc(report.cache.gets)
            self.cache_hits.inc(report.cache.hits)
            with self._lock:  # our own totals: the counters' values are not public
                self._gets += report.cache.gets
                self._hits += report.cache.hits
                self.cache_hit_ratio.set(self._hits / self._gets)

    def workers_changed(self, busy: int, total: int) -> None:
        self.workers.set(total)
        self.workers_busy.set(busy)
        self.worker_utilisation.set(busy / total if total else 0.0)
