"""dashboard (8080): platform-wide health (JSON) and the HTML health page.

`GET /cluster-health` replaces, on this port, the per-process report every other port
serves: here it is every cluster and replica the dashboard can find (see
bem/gateway/platform_health.py). The per-process report stays available at
`/cluster-health/local`, as on every port.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib import resources
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse

from bem.errors import NotFound
from bem.gateway import Gateway
from bem.gateway.access import install_access
from bem.runtime.runtime import Ctx, ServiceContext
from bem.runtime.service import ServiceSpec
from bem.services.dashboard import traces
from bem.services.dashboard.models import ClusterReport, PlatformHealth

service = ServiceSpec(
    name="dashboard",
    title="BEM health dashboard",
    description=(
        "Health of the whole platform: every cluster and replica, found in the Redis replica "
        "registry (or at the static BACKEND_* addresses without Redis), each service's "
        "health aggregated fail > warn > pass (an unreachable replica is fail), and an HTML "
        "page at `/` that shows clusters, replicas, status and key metrics, refreshing "
        "itself."),
)

_HEALTH_DOC = {503: {"model": PlatformHealth, "description": "some cluster fails"}}


def _status(response: Response | None, status: str) -> None:
    if response is not None:
        response.headers["Cache-Control"] = "no-store"
        if status == "fail":
            response.status_code = 503


@service.operation("GET", "/cluster-health", tags=["health"], exclude_none=True,
                   responses=_HEALTH_DOC)
async def cluster_health(ctx: Ctx, response: Response = None) -> PlatformHealth:  # type: ignore[assignment]
    """Every cluster and replica with each service's health; 503 when anything fails."""
    report = await Gateway.of(ctx.runtime).collector.collect()
    _status(response, report["status"])
    return PlatformHealth.model_validate(report)


@service.operation("GET", "/clusters/{name}/health", tags=["health"], exclude_none=True,
                   responses=_HEALTH_DOC)
async def cluster_detail(name: str, ctx: Ctx,
                         response: Response = None) -> ClusterReport:  # type: ignore[assignment]
    """One cluster's replicas and services; 404 names the clusters that exist."""
    report = await Gateway.of(ctx.runtime).collector.collect()
    found = report["clusters"].get(name)
    if found is None:
        known = ", ".join(report["clusters"]) or "none"
        raise NotFound(f"name: no cluster {name!r} (known: {known})", field="name")
    _status(response, found["status"])
    return ClusterReport(name=name, checked_at=report["checked_at"], **found)


@service.operation("GET", "/overview", exclude_none=True)
async def overview(ctx: Ctx) -> PlatformHealth:
    """The page's data: the platform report plus each replica's key metrics (always 200)."""
    return PlatformHealth.model_validate(await Gateway.of(ctx.runtime).collector.collect(
        with_metrics=True))


@cache
def _page(page: str = "index.html", script: str = "dashboard.js") -> tuple[str, str]:
    """The page with its CSS and JS inlined (one request, nothing off-site) and the CSP that
    allows exactly those two inline blocks."""
    static = resources.files(__package__).joinpath("static")
    css = static.joinpath("dashboard.css").read_text()
    js = static.joinpath(script).read_text()
    html = (static.joinpath(page).read_text()
            .replace("/*STYLE*/", css).replace("/*SCRIPT*/", js))

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() \
            + "'"

    csp = (f"default-src 'none'; style-src {digest(css)}; script-src {digest(js)}; "
           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return html, csp


@service.setup
def _setup(app: FastAPI, ctx: ServiceContext) -> None:
    install_access(app, ctx.settings, Gateway.of(ctx.runtime).buckets)

    @app.get("/", response_class=HTMLResponse, tags=["page"])
    async def page() -> HTMLResponse:
        """The health page (self-contained: inline CSS and JS, same-origin requests only)."""
        return _html(*_page())

    @app.get("/traces", response_class=HTMLResponse, tags=["page"])
    async def traces_page() -> HTMLResponse:
        """The slowest recent traces per service, as span waterfalls (same kind of page)."""
        return _html(*_page("traces.html", "traces.js"))


def _html(html: str, csp: str) -> HTMLResponse:
    return HTMLResponse(html, headers={"Content-Security-Policy": csp,
                                       "Cache-Control": "no-store",
                                       "X-Content-Type-Options": "nosniff"})


@service.operation("GET", "/traces/slowest")
async def slowest_traces(ctx: Ctx) -> dict[str, Any]:
    """The slowest recent traces per service, from every process's span buffer, laid out
    as waterfalls (what the `/traces` page draws); `enabled` is false when tracing is off."""
    return await traces.slowest(ctx.runtime)

