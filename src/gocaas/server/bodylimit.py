"""A cap on request bodies that are not uploads: the API's JSON is a few KB, and FastAPI and our routes read
a body whole into memory before looking at it. Multipart uploads are capped by the upload route itself, at
the operator's upload limit."""

from __future__ import annotations

from typing import Final

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_BODY_LIMIT: Final = 1 << 20


class BodyLimit:
    """413 for a non-multipart body past `limit` bytes: at once by its Content-Length, or as it streams in
    (chunked) by raising in the route's read, which the app's handlers answer."""

    def __init__(self, app: ASGIApp, limit: int = JSON_BODY_LIMIT) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)
            return
        message = f"request body over {self.limit} bytes (only archive uploads may be larger)"
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse({"error": message, "field": "body"}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            got = await receive()
            if got["type"] == "http.request":
                received += len(got.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, message)
            return got

        await self.app(scope, counted, send)
