"""Build the FastAPI app of one service: its operations plus what every service port serves.

Every port: `/health`, `/health/live`, `/health/ready`, `/cluster-health`, `/metrics`,
`/docs`, `/openapi.json`, the old platform's `POST /process` (where the service has one: see
runtime/legacy.py), one error shape (`ErrorBody`) for every 4xx/5xx, and a request body limit
(413).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bem.errors import BemError
from bem.runtime import tracing
from bem.runtime.health import HEALTH_CONTENT_TYPE, cluster_health, health_response, service_health
from bem.runtime.legacy import install_process
from bem.runtime.metrics import METRICS_CONTENT_TYPE, MetricsMiddleware
from bem.runtime.service import ServiceContext, validation_failed

log = logging.getLogger("bem.app")


class BodyLimitMiddleware:
    """413 for bodies over the limit, by Content-Length or by counting a streamed body."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _too_large(self.limit, send)
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


class GraceExpiredMiddleware:
    """Answer 503 to a request cut short by shutdown, instead of uvicorn's bare 500.

    After GRACE_PERIOD uvicorn cancels the requests still running. One that has not started
    its response gets a 503 with Retry-After (another replica can take it), and the
    cancellation ends here: this is the outermost frame of the request task, which is
    exactly what the cancellation was meant to stop. Any other cancellation (the gateway's
    REQUEST_TIMEOUT around an in-process forward runs this app in its own task) goes on.
    """

    def __init__(self, app: Any, runtime: Any) -> None:
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


def json_response(body: Any, status: int, headers: Mapping[str, str] | None = None
                  ) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def error_response(exc: BemError) -> Response:
    return json_response(exc.to_body(), exc.status, exc.headers or None)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BemError)
    async def _bem_error(_request: Request, exc: BemError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            ctx = errors[0].get("ctx") or {}
            message = f"malformed JSON body: {ctx.get('error', 'cannot be parsed')}"
            return json_response({"error": "bad_request", "message": message,
                                  "field": "body"}, 400)
        return error_response(validation_failed(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return json_response({"error": codes.get(exc.status_code, "http_error"),
                              "message": str(exc.detail)}, exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return json_response({"error": "internal_error",
                              "message": f"internal error ({type(exc).__name__}); "
                                         f"see the service log"}, 500)


def _install_common_routes(app: FastAPI, ctx: ServiceContext) -> None:
    health_doc = {200: {"content": {HEALTH_CONTENT_TYPE: {}},
                        "description": "pass or warn"},
                  503: {"content": {HEALTH_CONTENT_TYPE: {}}, "description": "fail"}}

    @app.get("/health", tags=["health"], responses=health_doc, response_class=Response)
    async def health() -> Response:
        """Health of this service and what it depends on (application/health+json)."""
        return health_response(service_health(ctx))

    @app.get("/health/live", tags=["health"], response_class=Response, responses=health_doc)
    async def live() -> Response:
        """Liveness: the process and its event loop answer."""
        return health_response({"status": "pass", "serviceId": ctx.name})

    @app.get("/health/ready", tags=["health"], response_class=Response, responses=health_doc)
    async def ready() -> Response:
        """Readiness: every port of the process is bound and it is not shutting down."""
        rt = ctx.runtime
        ok = rt.ready and not rt.stopping
        output = "ready" if ok else ("shutting down" if rt.stopping else "starting")
        return health_response({"status": "pass" if ok else "fail", "serviceId": ctx.name,
                                "output": output})

    # A service may replace this route (its own is matched first); only its own is documented.
    replaced = any(getattr(r, "path", None) == "/cluster-health" for r in ctx.spec.router.routes)

    @app.get("/cluster-health", tags=["health"], response_class=Response, responses=health_doc,
             include_in_schema=not replaced)
    async def cluster() -> Response:
        """Health of the whole process: every member service, pool, cache and Redis."""
        return health_response(cluster_health(ctx.runtime))

    @app.get("/cluster-health/local", tags=["health"], response_class=Response,
             responses=health_doc)
    async def cluster_local() -> Response:
        """This process alone, on every port (what /cluster-health is except on the dashboard,
        whose /cluster-health aggregates every cluster); `bem health` reads it."""
        return health_response(cluster_health(ctx.runtime))

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {METRICS_CONTENT_TYPE: {}}}})
    async def metrics() -> Response:
        """Prometheus metrics of the whole process (scrape one port per process)."""
        return Response(ctx.runtime.metrics.render(), media_type=METRICS_CONTENT_TYPE)


def create_app(ctx: ServiceContext) -> FastAPI:
    spec = ctx.spec

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for hook in spec.lifespans:
                await stack.enter_async_context(hook(ctx))
            up = ctx.runtime.metrics.up.labels(spec.name, ctx.runtime.cluster)
            up.set(1)
            try:
                yield
            finally:
                up.set(0)

    # FastAPI's native OpenTelemetry hooks look the global providers up on every request
    # (~10 us of a ~60 us request); nothing configures OpenTelemetry here, so they are off.
    app = FastAPI(title=spec.title, description=spec.description, version=ctx.runtime.version,
                  lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.ctx = ctx
    ctx.app = app
    _install_error_handlers(app)
    # The service's own routes first: one may deliberately replace a common route (the
    # dashboard's /cluster-health aggregates every cluster instead of its own process).
    app.include_router(spec.router)
    _install_common_routes(app, ctx)
    if spec.legacy_operation:
        install_process(app, ctx)
    for setup in spec.setups:
        setup(app, ctx)
    app.add_middleware(BodyLimitMiddleware, limit=ctx.settings.max_body_size)
    app.add_middleware(GraceExpiredMiddleware, runtime=ctx.runtime)
    app.add_middleware(MetricsMiddleware, metrics=ctx.runtime.metrics, service=spec.name)
    tracing.install(app, ctx)  # outermost: the span covers everything above
    return app
