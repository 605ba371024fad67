"""Build the FastAPI app of one service: its operations plus what every service port serves.

Every port: the common routes (`routes.py`: `/health...`, `/cluster-health`, `/metrics`),
`/docs`, `/openapi.json`, the old platform's `POST /process` (where the service has one:
`legacy.py`), one error shape for every 4xx/5xx (`handlers.py`), the request body limit
(`body_limit.py`), a 503 for requests cut short by shutdown (`grace.py`) and the request
metrics (`metrics.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from bem.runtime import tracing
from bem.runtime.body_limit import BodyLimitMiddleware
from bem.runtime.grace import GraceExpiredMiddleware
from bem.runtime.handlers import install_error_handlers
from bem.runtime.legacy import install_process
from bem.runtime.metrics import MetricsMiddleware
from bem.runtime.routes import install_common_routes
from bem.runtime.runtime import ServiceContext


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
    install_error_handlers(app)
    # The service's own routes first: one may deliberately replace a common route (the
    # dashboard's /cluster-health aggregates every cluster instead of its own process).
    app.include_router(spec.router)
    install_common_routes(app, ctx)
    if spec.legacy_operation:
        install_process(app, ctx)
    for setup in spec.setups:
        setup(app, ctx)
    app.add_middleware(BodyLimitMiddleware, limit=ctx.settings.max_body_size)
    app.add_middleware(GraceExpiredMiddleware, runtime=ctx.runtime)
    app.add_middleware(MetricsMiddleware, metrics=ctx.runtime.metrics, service=spec.name)
    tracing.install(app, ctx)  # outermost: the span covers everything above
    return app
