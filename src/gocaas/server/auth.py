"""Bearer-token authentication: every /v1 route acts for the tenant its token belongs to."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gocaas.server.service import Service
from gocaas.store.tenants import Principal

__all__ = ["Caller", "ServiceDep", "get_service"]

_bearer = HTTPBearer(auto_error=False, description="A token from `gocaas token create --tenant NAME`.")


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def principal(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise HTTPException(
            401, "missing bearer token (Authorization: Bearer TOKEN)", headers={"WWW-Authenticate": "Bearer"}
        )
    known, found = service.remembered(credentials.credentials)  # no thread hop for a known token
    if not known:
        found = await run_in_threadpool(service.authenticate, credentials.credentials)
    if found is None:
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return found


Caller = Annotated[Principal, Depends(principal)]
