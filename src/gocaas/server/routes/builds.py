"""Submitting, reading, listing and cancelling builds."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.types import Message

from gocaas.pipeline.run import new_build_id
from gocaas.server.auth import Caller, ServiceDep
from gocaas.server.errors import validation_field
from gocaas.server.intake import FieldError, archive_suffix, check_upload, fingerprint, git_source, make_spec
from gocaas.server.schemas import (
    BuildList,
    BuildOptionsIn,
    BuildRequest,
    BuildView,
    CompatBuildRequest,
    SubmitResponse,
)
from gocaas.server.service import Service
from gocaas.spec import SourceKind, SourceSpec
from gocaas.store.builds import BuildRecord, BuildState
from gocaas.store.tenants import Principal

router = APIRouter(prefix="/v1", tags=["builds"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="The same key again returns the build it first created.",
    ),
]

_MULTIPART_SLACK = 1024 * 1024  # the spec part and multipart framing around the archive


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def lookup(service: Service, principal: Principal, build_id: str) -> BuildRecord:
    """The caller's build; another tenant's build answers exactly like a missing one."""
    record = service.builds.get(build_id, tenant_id=principal.tenant_id)
    if record is None:
        raise HTTPException(404, f"no build {build_id!r}")
    return record


@router.post("/build", status_code=202, response_model=SubmitResponse, summary="Compile-as-a-service form")
async def submit_compat(
    body: CompatBuildRequest,
    caller: Caller,
    service: ServiceDep,
    request: Request,
    key: IdempotencyKey = None,
) -> SubmitResponse:
    """One git ref, one target, no tests: `artifact_url` serves the binary once the build succeeds."""
    settings = service.settings
    source = git_source(body.git_url, body.ref, settings)
    options = BuildOptionsIn(
        go_version=body.go_version, targets=[f"{body.target_os}/{body.target_arch}"], tests=False
    )
    spec = make_spec(source, options, service.default_target)
    record, created = await run_in_threadpool(
        service.submit,
        caller,
        spec,
        fingerprint=fingerprint(spec, caller.tenant_id),
        priority=options.priority,
        idempotency_key=key,
    )
    return service.submitted(record, created, _base(request))


_FULL_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BuildRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["archive"],
                    "properties": {
                        "spec": {"type": "string", "description": "BuildRequest as JSON, without source"},
                        "archive": {"type": "string", "format": "binary", "description": ".tar.gz or .zip"},
                    },
                }
            },
        },
    }
}


@router.post(
    "/builds",
    status_code=202,
    response_model=SubmitResponse,
    openapi_extra=_FULL_FORM,
    summary="Submit a build",
)
async def submit(
    request: Request, caller: Caller, service: ServiceDep, key: IdempotencyKey = None
) -> SubmitResponse:
    """A git URL and ref as JSON (`BuildRequest`), or a module archive as multipart (`archive` + `spec`)."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    build_id = new_build_id()
    upload: Path | None = None
    content: str | None = None
    try:
        if media_type == "multipart/form-data":
            body, upload, content, module = await _receive_upload(request, service, build_id)
            source = _archive_source(upload, module)
        elif media_type in ("application/json", ""):
            body = _parse(BuildRequest, await request.body())
            if body.source is None:
                raise FieldError(
                    "source", "required: a git URL and ref (or upload an archive as multipart/form-data)"
                )
            source = git_source(body.source.git_url, body.source.ref, service.settings, prefix="source.")
        else:
            raise HTTPException(
                415, f"unsupported content type {content_type!r}: send JSON or multipart/form-data"
            )
        spec = make_spec(source, body, service.default_target)
        timeout_s = _timeout(body, service)
        record, created = await run_in_threadpool(
            service.submit,
            caller,
            spec,
            fingerprint=fingerprint(spec, caller.tenant_id, content, timeout_s),
            priority=body.priority,
            idempotency_key=key,
            build_id=build_id,
            upload=str(upload) if upload else None,
            timeout_s=timeout_s,
        )
    except BaseException:
        if upload is not None:
            upload.unlink(missing_ok=True)
        raise
    if upload is not None and not created:
        upload.unlink(missing_ok=True)  # the existing build has its own
    return service.submitted(record, created, _base(request))


def _timeout(body: BuildRequest, service: Service) -> float | None:
    limit = service.settings.build_timeout
    if body.timeout is not None and body.timeout > limit:
        raise FieldError("timeout", f"{body.timeout:g}s is over this server's limit of {limit:g}s")
    return body.timeout


def _parse(model: type[BuildRequest], raw: bytes | str, part: str = "") -> BuildRequest:
    """The request's JSON, or the multipart part named `part` (which an error about all of it names)."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as e:
        error = e.errors()[0]
        field = validation_field(error["loc"])
        if part and field == "body":
            field = part
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise FieldError(field, message) from None


def _archive_source(upload: Path, module: str) -> SourceSpec:
    try:
        return SourceSpec(kind=SourceKind.ARCHIVE, location=str(upload), module=module)
    except ValidationError:
        raise FieldError(
            "archive", f"go.mod's module path {module[:100]!r} is not usable", status=400
        ) from None


def _within(request: Request, limit: int, shown_limit: int) -> Request:
    """The request, its body cut off with a 413 past limit bytes (the upload limit, shown_limit, plus the
    multipart framing's slack): a chunked upload has no Content-Length to refuse it by, and the multipart
    parser would otherwise spool all of it to disk first."""
    receive, received = request.receive, 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"upload is over this server's limit of {shown_limit} bytes")
        return message

    return Request(request.scope, counted)


async def _receive_upload(
    request: Request, service: Service, build_id: str
) -> tuple[BuildRequest, Path, str, str]:
    limit = service.settings.server_max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
        raise HTTPException(413, f"upload of {declared} bytes is over this server's limit of {limit} bytes")
    form = await _within(request, limit + _MULTIPART_SLACK, limit).form(max_files=1, max_fields=4)
    archive = form.get("archive")
    spec_part = form.get("spec")
    if not isinstance(archive, UploadFile):
        raise FieldError("archive", "required: the module as a .tar.gz or .zip file part", status=400)
    if spec_part is not None and not isinstance(spec_part, str):
        raise FieldError("spec", "must be a text part holding JSON", status=400)
    body = _parse(BuildRequest, spec_part or "{}", part="spec")
    if body.source is not None:
        raise FieldError("source", "give either a git source or an archive, not both")
    head = await archive.read(4)
    await archive.seek(0)
    dest = service.settings.uploads_dir / f"{build_id}{archive_suffix(head)}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    try:
        with dest.open("wb") as out:
            while chunk := await archive.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"archive is over this server's limit of {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
        label = repr(archive.filename) if archive.filename else "the upload"
        module = await run_in_threadpool(check_upload, dest, service.settings, label)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return body, dest, digest.hexdigest(), module


@router.get("/builds/{build_id}", response_model=BuildView, summary="A build's status")
async def get_build(
    build_id: str,
    caller: Caller,
    service: ServiceDep,
    wait: Annotated[float, Query(ge=0, le=120, description="Long-poll: seconds to wait for a change")] = 0,
) -> Response:
    # The hottest route: one thread hop for the common read, and the view serialized once, by itself
    # (the response model documents it; re-validating what was just built costs a third of a request).
    if wait <= 0:
        return _json(await run_in_threadpool(lambda: service.view(lookup(service, caller, build_id))))
    with service.notifier.subscribe(build_id) as changes:
        record = await run_in_threadpool(lookup, service, caller, build_id)
        if not record.status.finished:
            seen = (record.status, record.stage, record.attempts)
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                await changes.wait(min(left, 1.0))
                record = await run_in_threadpool(lookup, service, caller, build_id)
                if (record.status, record.stage, record.attempts) != seen:
                    break
    return _json(await run_in_threadpool(service.view, record))


def _json(view: BuildView) -> Response:
    return Response(view.model_dump_json(by_alias=True), media_type="application/json")


@router.get("/builds", response_model=BuildList, summary="The caller's builds, newest first")
def list_builds(
    caller: Caller,
    service: ServiceDep,
    status: Annotated[list[BuildState] | None, Query(description="Only these statuses")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[str | None, Query(max_length=40, description="A build id: page after it")] = None,
) -> BuildList:
    records = service.builds.list(
        tenant_id=caller.tenant_id, statuses=status or (), before=before, limit=limit + 1
    )
    page = records[:limit]
    return BuildList(
        builds=[service.view(r, with_stages=False) for r in page],
        next_before=page[-1].id if len(records) > limit else None,
    )


@router.post(
    "/builds/{build_id}/cancel",
    status_code=202,
    response_model=BuildView,
    summary="Cancel a build",
    responses={200: {"model": BuildView, "description": "The build had already finished: nothing to cancel"}},
)
def cancel_build(build_id: str, caller: Caller, service: ServiceDep, response: Response) -> BuildView:
    if lookup(service, caller, build_id).status.finished:
        response.status_code = 200  # idempotent: a retried cancel, or one that came too late
    record = service.builds.request_cancel(build_id)
    assert record is not None
    if record.status is BuildState.CANCELLED and record.upload:
        Path(record.upload).unlink(missing_ok=True)  # cancelled while queued: no executor will remove it
    if service.executor is not None:
        service.executor.wake()
    service.notifier.notify(build_id)
    return service.view(record)


__all__ = ["lookup", "router"]
