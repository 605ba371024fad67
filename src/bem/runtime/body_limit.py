"""The request body limit of every port: 413 before a body over MAX_BODY_SIZE is parsed."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException


class BodyLimitMiddleware:
    """413 for bodies over the limit, by Content-Length or by counting a streamed body."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _too_large(self.limit, send)
                return
            chunked = chunked or name == b"transfer-encoding"
        if not chunked:
            # Framed by Content-Length, or no body at all (RFC 9112 section 6.3): the server
            # delivers no more than the header said, so there is nothing to count.
            await self.app(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge(self.limit)
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await _too_large(self.limit, send)


class _BodyTooLarge(StarletteHTTPException):
    # An HTTPException, because FastAPI turns any other error raised while it reads the
    # body into a 400 "error parsing the body".
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes "
                              f"(MAX_BODY_SIZE)")


async def _too_large(limit: int, send: Any) -> None:
    body = orjson.dumps({"error": "payload_too_large",
                        "message": f"request body exceeds the limit of {limit} bytes "
                                   f"(MAX_BODY_SIZE)"})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
