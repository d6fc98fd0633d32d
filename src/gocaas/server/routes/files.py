"""What a build leaves: its log (whole, or live as Server-Sent Events), artifacts (checksummed, ETag,
Range), the JSON report, the JUnit file and the coverage profile."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse

from gocaas.server.auth import Caller, ServiceDep
from gocaas.server.notify import Subscription
from gocaas.server.routes.builds import lookup
from gocaas.server.schemas import ArtifactView
from gocaas.server.service import Service
from gocaas.store.builds import ArtifactRecord, BuildRecord
from gocaas.store.tenants import Principal

router = APIRouter(prefix="/v1/builds/{build_id}", tags=["results"])

_LOG_POLL = 1.0  # seconds between database reads of a live log when no wake-up comes
_KEEPALIVE = 15.0  # seconds of silence before a keep-alive comment
_LINE_END = re.compile(r"\r\n|\r|\n")


@router.get("/log", summary="The build's log; live with Accept: text/event-stream")
async def get_log(
    build_id: str,
    caller: Caller,
    service: ServiceDep,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    await run_in_threadpool(lookup, service, caller, build_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        # An id we sent is a small ASCII number; anything else (e.g. "²", or past SQLite's integers) restarts.
        sent = last_event_id or ""
        after = int(sent) if sent.isascii() and sent.isdigit() and len(sent) < 19 else 0
        return StreamingResponse(
            _stream(service, caller, build_id, after, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    chunks = await run_in_threadpool(_whole_log, service, build_id)
    return PlainTextResponse("".join(chunks))


def _whole_log(service: Service, build_id: str) -> list[str]:
    texts: list[str] = []
    after = 0
    while batch := service.builds.log(build_id, after=after):
        texts += [c.text for c in batch]
        after = batch[-1].id
    return texts


async def _stream(
    service: Service, caller: Principal, build_id: str, after: int, request: Request
) -> AsyncIterator[str]:
    """`event: log` per chunk (its id resumes a reconnect), then `event: end` with the final status."""
    with service.notifier.subscribe(build_id) as changes:
        async for event in _events(service, caller, build_id, after, request, changes):
            yield event


async def _events(
    service: Service, caller: Principal, build_id: str, after: int, request: Request, changes: Subscription
) -> AsyncIterator[str]:
    quiet_since = time.monotonic()
    while True:
        record = await run_in_threadpool(lookup, service, caller, build_id)
        chunks = await run_in_threadpool(service.builds.log, build_id, after=after)
        for chunk in chunks:
            # SSE ends a line at \r too: split on every line ending, or text after a bare \r is lost.
            lines = _LINE_END.split(chunk.text.rstrip("\r\n"))
            data = "\n".join(f"data: {line}" for line in lines)
            yield f"id: {chunk.id}\nevent: log\n{data}\n\n"
            after = chunk.id
            quiet_since = time.monotonic()
        if record.status.finished and not chunks:
            end = {"status": record.status.value, "exit_code": record.exit_code}
            yield f"event: end\ndata: {json.dumps(end)}\n\n"
            return
        if await request.is_disconnected():
            return
        if not chunks:
            await changes.wait(_LOG_POLL)
            if time.monotonic() - quiet_since >= _KEEPALIVE:
                yield ": keep-alive\n\n"  # a comment: proxies keep a quiet stream open
                quiet_since = time.monotonic()


def _artifact_view(request: Request, build_id: str, artifact: ArtifactRecord) -> ArtifactView:
    url = str(request.url_for("get_artifact", build_id=build_id, name=artifact.name))
    return ArtifactView(
        name=artifact.name,
        kind=artifact.kind,
        goos=artifact.goos,
        goarch=artifact.goarch,
        sha256=artifact.sha256,
        size=artifact.size,
        url=url,
    )


@router.get("/artifacts", response_model=list[ArtifactView], summary="The build's artifacts and checksums")
def list_artifacts(
    build_id: str, caller: Caller, service: ServiceDep, request: Request
) -> list[ArtifactView]:
    lookup(service, caller, build_id)
    return [_artifact_view(request, build_id, a) for a in service.builds.artifacts(build_id)]


def _serve(artifact: ArtifactRecord, if_none_match: str | None) -> Response:
    etag = f'"{artifact.sha256}"'
    headers = {"ETag": etag, "X-Checksum-Sha256": artifact.sha256, "Cache-Control": "private, immutable"}
    # If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" matches "x", and * matches what exists.
    given = {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}
    if etag in given or "*" in given:
        return Response(status_code=304, headers=headers)
    path = Path(artifact.path)
    if not path.is_file():
        raise HTTPException(410, f"artifact {artifact.name} is no longer on this server")
    return FileResponse(path, filename=artifact.name, headers=headers, media_type="application/octet-stream")


@router.get(
    "/artifacts/{name}",
    summary="Download an artifact (ETag = its sha256, Range supported; HEAD for the headers alone)",
)
@router.head("/artifacts/{name}", include_in_schema=False)
def get_artifact(
    build_id: str,
    name: str,
    caller: Caller,
    service: ServiceDep,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    lookup(service, caller, build_id)
    for artifact in service.builds.artifacts(build_id):
        if artifact.name == name:
            return _serve(artifact, if_none_match)
    raise HTTPException(404, f"build {build_id} has no artifact {name!r}")


@router.get("/artifact", summary="The build's binary (the compile-as-a-service form's artifact_url)")
@router.head("/artifact", include_in_schema=False)
def get_primary_artifact(
    build_id: str,
    caller: Caller,
    service: ServiceDep,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    record = lookup(service, caller, build_id)
    _require_finished(record)
    binaries = [a for a in service.builds.artifacts(build_id) if a.kind == "binary"]
    if len(binaries) != 1:
        names = ", ".join(a.name for a in binaries) or "none"
        raise HTTPException(
            409, f"build {build_id} has {len(binaries)} binaries ({names}): use /artifacts/NAME"
        )
    return _serve(binaries[0], if_none_match)


def _require_finished(record: BuildRecord) -> None:
    if not record.status.finished:
        raise HTTPException(409, f"build {record.id} is {record.status.value}: not finished yet")
    if record.status.value != "succeeded" and record.report is None:
        raise HTTPException(409, f"build {record.id} {record.status.value}: {record.message or 'no result'}")


def _report(record: BuildRecord) -> dict[str, Any]:
    _require_finished(record)
    if record.report is None:
        raise HTTPException(404, f"build {record.id} has no report")
    report: dict[str, Any] = json.loads(record.report)
    return report


@router.get("/report", summary="The build's JSON report")
def get_report(build_id: str, caller: Caller, service: ServiceDep) -> Response:
    record = lookup(service, caller, build_id)
    _report(record)
    return Response(record.report, media_type="application/json")


def _test_file(record: BuildRecord, pick: str) -> Path:
    tests = _report(record).get("tests") or {}
    coverage = tests.get("coverage") or {}
    where = {
        "junit": tests.get("junit_path"),
        "profile": coverage.get("profile_path"),
        "html": coverage.get("html_path"),
    }[pick]
    if not where or not Path(where).is_file():
        what = "JUnit file" if pick == "junit" else "coverage (build with coverage on)"
        raise HTTPException(404, f"build {record.id} has no {what}")
    return Path(where)


@router.get("/junit", summary="The test results as JUnit XML")
def get_junit(build_id: str, caller: Caller, service: ServiceDep) -> FileResponse:
    path = _test_file(lookup(service, caller, build_id), "junit")
    return FileResponse(path, media_type="application/xml", filename="junit.xml")


@router.get("/coverage", summary="The merged coverage profile, or its HTML report with ?format=html")
def get_coverage(
    build_id: str,
    caller: Caller,
    service: ServiceDep,
    format: Annotated[str, Query(pattern="^(profile|html)$")] = "profile",
) -> FileResponse:
    path = _test_file(lookup(service, caller, build_id), format)
    media = "text/html" if format == "html" else "text/plain"
    return FileResponse(path, media_type=media, filename=path.name)
