"""A request cut short by shutdown gets a 503 with Retry-After, not uvicorn's bare 500."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from bem.runtime.runtime import Runtime


class GraceExpiredMiddleware:
    """Answer 503 to a request cut short by shutdown, instead of uvicorn's bare 500.

    After GRACE_PERIOD uvicorn cancels the requests still running. One that has not started
    its response gets a 503 with Retry-After (another replica can take it), and the
    cancellation ends here: this is the outermost frame of the request task, which is
    exactly what the cancellation was meant to stop. Any other cancellation (the gateway's
    REQUEST_TIMEOUT around an in-process forward runs this app in its own task) goes on.
    """

    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if started or not self.runtime.stopping:
                raise
            body = orjson.dumps({"error": "service_unavailable",
                                 "message": "the service shut down before this request "
                                            "completed (GRACE_PERIOD); retry on another "
                                            "replica"})
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"retry-after", b"1"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
