"""OpenTelemetry tracing: a span for each build and, inside it, one for each stage, exported over OTLP/HTTP
when `otlp_endpoint` is set (otherwise the API's no-op tracer: nothing is recorded or sent)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from gocaas.pipeline.events import Event, StageFinished, StageStarted
from gocaas.settings import Settings

__all__ = ["build_span", "configure_tracing", "flush_tracing"]

_provider: Any = None


def configure_tracing(settings: Settings, *, service: str) -> None:
    """Install an exporting tracer provider for this process, once, if an endpoint is configured."""
    global _provider
    if settings.otlp_endpoint is None or _provider is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5)))
    trace.set_tracer_provider(provider)
    _provider = provider


def flush_tracing() -> None:
    if _provider is not None:
        _provider.force_flush(timeout_millis=5000)


@contextmanager
def build_span(build_id: str, tenant: str) -> Iterator[Callable[[Event], None]]:
    """A span for the build; the yielded event sink opens and closes a child span per stage."""
    tracer = trace.get_tracer("gocaas")
    stages: dict[str, Span] = {}
    with tracer.start_as_current_span(
        "build", attributes={"gocaas.build_id": build_id, "gocaas.tenant": tenant}
    ) as build:

        def on_event(event: Event) -> None:
            if isinstance(event, StageStarted):
                stages[event.stage] = tracer.start_span(
                    f"stage {event.stage}",
                    attributes={"gocaas.build_id": build_id, "gocaas.stage": event.stage},
                )
            elif isinstance(event, StageFinished):
                span = stages.pop(event.record.name, None)
                if span is None:  # passed over without starting
                    return
                span.set_attribute("gocaas.stage.status", event.record.status.value)
                if event.record.status == "failed":
                    span.set_status(Status(StatusCode.ERROR))
                    build.set_status(Status(StatusCode.ERROR, f"{event.record.name} failed"))
                span.end()

        try:
            yield on_event
        finally:
            for span in stages.values():
                span.end()
    flush_tracing()
