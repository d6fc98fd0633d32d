"""Traces over OTLP (to a real loopback receiver) and structured JSON logs carrying the build id."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import EXAMPLES
from tests.server.conftest import ServerFactory
from tests.support.server import upload, wait_finished


class _Receiver(BaseHTTPRequestHandler):
    spans: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}.get("service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: a.value.string_value for a in span.attributes}
                    self.spans.append(
                        {
                            "name": span.name,
                            "service": service,
                            "attributes": attributes,
                            "trace": span.trace_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "id": span.span_id.hex(),
                            "error": span.status.code == 2,
                        }
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    spans: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"spans": spans})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", spans
    httpd.shutdown()


def test_builds_and_stages_are_traced_and_logged(
    make_server: ServerFactory, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    endpoint, spans = receiver
    server = make_server(workers=1, otlp_endpoint=endpoint)
    client = server.client(server.admin_token)
    build_id = upload(client, EXAMPLES / "hello", '{"targets": ["linux/amd64"]}').json()["build_id"]
    assert wait_finished(client, build_id)["status"] == "succeeded"

    deadline = time.monotonic() + 15
    while not any(s["name"] == "build" for s in spans):
        assert time.monotonic() < deadline, "no build span arrived"
        time.sleep(0.2)
    [build] = [s for s in spans if s["name"] == "build"]
    assert build["attributes"] == {"gocaas.build_id": build_id, "gocaas.tenant": "admin"}
    assert build["service"] == "gocaas-worker"
    stages = {s["name"]: s for s in spans if s["name"].startswith("stage ")}
    assert {"stage source", "stage toolchain", "stage vet", "stage build", "stage package"} <= set(stages)
    assert all(s["trace"] == build["trace"] and s["parent"] == build["id"] for s in stages.values())
    assert not build["error"]

    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("build_id") == build_id]
    assert {"build started", "build finished"} <= {line["event"] for line in mine}
    assert all("timestamp" in line and "level" in line for line in mine)
