"""GET /metrics on `gocaas cache serve`: the server's counters and its store, in Prometheus' text format.

Read from the server when scraped (a collector, not a second set of counters kept in step with the first),
in a registry of the server's own so that several servers in one process (the tests) stay apart. Loaded on
the first scrape only: a server nobody scrapes never imports prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gocaas.cache.diskspace import MinFree, free_space

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gocaas.cache.server import CacheHTTPServer

PREFIX = "gocaas_cache_server_"

# server.counters: name → help (exposed as PREFIX + name + "_total")
COUNTERS = {
    "requests": "HTTP requests received.",
    "ac_hits": "Action entries found (GET or HEAD /v1/NS/ac/ID).",
    "ac_misses": "Action entries asked for and not found.",
    "cas_gets": "Objects sent one at a time (GET or HEAD /v1/cas/ID).",
    "puts": "Objects and action entries stored.",
    "manifests": "Prefetch manifests sent (GET /v1/NS/traces/ID).",
    "packs": "Packs of objects sent (POST /v1/cas/pack).",
    "refused": "Requests refused with a 4xx other than 404, or a 5xx.",
    "errors": "Requests that failed inside the server (500).",
    "bytes_in": "Object bytes received.",
    "bytes_out": "Bytes sent in answers.",
}
# server.namespace_counters: (namespace, name) → count, by namespace
BY_NAMESPACE = {
    "ac_hits": ("action_hits", "Action entries found, by namespace."),
    "ac_misses": ("action_misses", "Action entries asked for and not found, by namespace."),
    "puts": ("action_puts", "Action entries stored, by namespace."),
}


class CacheServerCollector(Collector):
    def __init__(self, server: CacheHTTPServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        with server.lock:
            counters = dict(server.counters)
            by_namespace = dict(server.namespace_counters)
        for name, text in COUNTERS.items():
            family = CounterMetricFamily(PREFIX + name, text)
            family.add_metric([], counters[name])
            yield family
        for name, (metric, text) in BY_NAMESPACE.items():
            family = CounterMetricFamily(PREFIX + metric, text, labels=["namespace"])
            for (namespace, counted), value in sorted(by_namespace.items()):
                if counted == name:
                    family.add_metric([namespace], value)
            yield family
        store = server.store
        size = GaugeMetricFamily(PREFIX + "store_bytes", "The store's size, as its usage estimate says.")
        size.add_metric([], store.usage_estimate())
        yield size
        if store.max_size is not None:
            budget = GaugeMetricFamily(PREFIX + "store_budget_bytes", "The store budget: LRU gc past it.")
            budget.add_metric([], store.max_size)
            yield budget
        yield from disk_gauges(PREFIX + "disk", store.root, store.disk.min_free)


def disk_gauges(prefix: str, path: str, min_free: MinFree | None) -> Iterator[Metric]:
    """`<prefix>_free_bytes` of the disk holding path, and `<prefix>_min_free_bytes` it keeps free (the
    caches' min_free), read now: for the cache server's scrape and the service's."""
    free, total = free_space(path)
    disk = GaugeMetricFamily(f"{prefix}_free_bytes", "Free space on the disk (statvfs, unprivileged).")
    disk.add_metric([], free)
    yield disk
    if min_free is not None:
        keep = GaugeMetricFamily(f"{prefix}_min_free_bytes", "Free space the caches keep: LRU gc under it.")
        keep.add_metric([], min_free.bytes_on(total))
        yield keep


def exposition(server: CacheHTTPServer) -> tuple[bytes, str]:
    """The body and content type of a /metrics answer for server."""
    registry = server.metrics_registry
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(CacheServerCollector(server))
        server.metrics_registry = registry
    return generate_latest(registry), CONTENT_TYPE_LATEST
