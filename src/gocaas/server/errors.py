"""Every error answers JSON `{"error": message, "field": name-or-null}`; gocaas errors map to statuses."""

from __future__ import annotations

import errno
from typing import Final

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gocaas.errors import BadInput, GocaasError, InfraError
from gocaas.server.intake import FieldError
from gocaas.store.builds import QueueFull

__all__ = ["install_error_handlers", "validation_field"]

RETRY_AFTER: Final = "10"
log = structlog.get_logger("gocaas.server")


def _error(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def validation_field(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """A pydantic error location as a field name: ("body", "target_os") → "target_os"."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = validation_field(first.get("loc", ()))
        message = first.get("msg", "invalid")
        if first.get("type") == "extra_forbidden":
            message = "unknown field"
        return _error(422, f"{field}: {message}", field)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(FieldError)
    async def _field(_request: Request, exc: FieldError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.field)

    @app.exception_handler(QueueFull)
    async def _full(_request: Request, exc: QueueFull) -> JSONResponse:
        status = 429 if exc.scope == "tenant" else 503
        return _error(status, exc.message, headers={"Retry-After": RETRY_AFTER})

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise exc  # a bug: the handler for Exception below answers and logs it
        # The server's disk is full (an upload, a build's files): nothing the client did wrong, and it may
        # pass once retention or the cache's gc has made room.
        log.error("out of disk space", path=request.url.path, error=str(exc)[:500])
        return _error(507, "the server is out of disk space; try again later", headers={"Retry-After": "60"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug: the client gets the usual JSON shape without internals; the log gets the traceback (here
        # and, since Starlette re-raises it after answering, from the server once more).
        log.error("internal error", path=request.url.path, error=f"{type(exc).__name__}: {exc}"[:500])
        return _error(500, "internal error (logged on the server)")

    @app.exception_handler(GocaasError)
    async def _gocaas(_request: Request, exc: GocaasError) -> JSONResponse:
        if isinstance(exc, BadInput):
            return _error(400, exc.message)
        if isinstance(exc, InfraError):
            log.warning("infrastructure error", error=exc.message, kind=exc.kind)
            return _error(503, exc.message, headers={"Retry-After": RETRY_AFTER})
        return _error(400, exc.message)
