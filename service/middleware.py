"""Request-body limits, as plain ASGI middleware: a body over `limit` bytes answers 413 before any route
reads it, whether its size is declared (Content-Length) or it arrives chunked; a body that stops arriving
for `timeout_s` answers 408 instead of holding a worker."""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_WITH_BODY = ("POST", "PUT", "PATCH")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int, timeout_s: float = 10.0, limits: dict[str, int] | None = None) -> None:
        self.app, self.default, self.timeout_s = app, limit, timeout_s
        self.limits = limits or {}  # by path: a route that takes larger bodies (an upload of code)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"].rstrip("/"), self.default)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await self._refuse(scope, receive, send, limit)
        if scope["method"] not in _WITH_BODY:
            return await self.app(scope, receive, send)
        # Read it here (at most `limit` bytes), counting what arrives and stopping at the limit rather than
        # buffering it all; the route then reads the body from memory.
        body, more = bytearray(), True
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                return await JSONResponse({"detail": f"request body not received within {self.timeout_s:g} s"},
                                          status_code=408)(scope, receive, send)
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return await self._refuse(scope, receive, send, limit)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        await JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)(scope, receive, send)
