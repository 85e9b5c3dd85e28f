"""Request guards: optional API key and a body size limit.

The key is compared with `hmac.compare_digest` (constant time, so response timing leaks nothing about
it). The size guard is a plain ASGI middleware so it counts bytes as they arrive and stops reading at
the limit, whatever Content-Length claims; it also answers a lying Content-Length early.
"""

from __future__ import annotations

import hmac
import json

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from l2s.server.errors import APIError, error_body


def check_api_key(request: Request) -> None:
    """FastAPI dependency of the /v1 routes (/health and /metrics stay open for probes and scrapers):
    401 unless `Authorization: Bearer <key>` matches."""
    expected: str | None = request.app.state.settings.api_key
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, "missing API key; send 'Authorization: Bearer <key>'", code="invalid_api_key")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise APIError(401, "incorrect API key", code="invalid_api_key")


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is larger than this server's limit of {max_bytes} bytes")


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over `max_bytes`, by Content-Length or by bytes read."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = json.dumps(error_body(413, BodyTooLarge(self.max_bytes).detail)).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def limited_receive():
            # Raised inside the route's body read; FastAPI re-raises HTTPExceptions to the error handler.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)
