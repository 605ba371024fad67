"""The routes every service port serves besides its operations: health and metrics."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from bem.runtime.health import HEALTH_CONTENT_TYPE, cluster_health, health_response, service_health
from bem.runtime.metrics import METRICS_CONTENT_TYPE
from bem.runtime.runtime import ServiceContext


def install_common_routes(app: FastAPI, ctx: ServiceContext) -> None:
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
