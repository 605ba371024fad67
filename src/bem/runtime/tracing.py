"""Tracing's entry points that cost nothing when tracing is off.

Tracing (OpenTelemetry, W3C trace context) is on when OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set or OTEL_TRACES_EXPORTER names an exporter
(`Settings.tracing`). Off, `build` returns None, every hook below is a `None` check, and
nothing imports the OpenTelemetry SDK (runtime/otel.py and runtime/spans.py are imported
only when it is on; `benchmarks/imports.py` shows the import cost this saves).

What crosses a process boundary with a trace (the event field, the pool task) is in
`trace_carry.py`, which pool workers import. The modules here call each other one way only:
this one imports otel.py and spans.py (lazily), never the reverse, and none of them imports
bem.runtime.runtime (which imports this one), so the contexts they are handed are typed Any.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from bem.runtime.otel import Tracing
    from bem.runtime.spans import EventSpans
    from bem.settings import Settings

Handler = Callable[..., Awaitable[None]]
ServiceContext = Any  # bem.runtime.runtime.ServiceContext (see the module docstring)


def build(settings: Settings, runtime: Any) -> Tracing | None:
    """The process's tracing (for `runtime`, the process's Runtime), or None when no
    OTEL_* variable turns it on."""
    if not settings.tracing:
        return None
    from bem.runtime.otel import Tracing

    return Tracing(settings, runtime)


def traced_client(tracing: Tracing, *args: Any) -> Any:
    """The service client (ServiceClient's arguments) that traces every call."""
    from bem.runtime.spans import TracedClient

    return TracedClient(tracing, *args)


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """A server span per request on this service's port (outermost middleware), and
    `GET /traces/local`: this process's recent spans, for the dashboard."""
    tracing = ctx.runtime.tracing
    if tracing is not None:
        from bem.runtime.spans import TraceMiddleware, install_local_traces

        app.add_middleware(TraceMiddleware, tracing=tracing, service=ctx.name)
        install_local_traces(app, tracing)


def event_spans(ctx: ServiceContext) -> EventSpans | None:
    """The callback engine consumer's spans (runtime/spans.py), None when off."""
    tracing = ctx.runtime.tracing
    if tracing is None:
        return None
    from bem.runtime.spans import EventSpans

    return EventSpans(tracing, ctx.name)


def traced_handler(ctx: ServiceContext, handler: Handler) -> Handler:
    """A WebSocket message handler with a span per message (itself when tracing is off)."""
    tracing = ctx.runtime.tracing
    if tracing is None:
        return handler
    from bem.runtime.spans import ws_handler

    return ws_handler(tracing, ctx.name, handler)


def trace_resolvers(ctx: ServiceContext, schema: Any) -> None:
    """A span per GraphQL resolver of `schema` when this process traces."""
    if ctx.runtime.tracing is not None:
        from bem.runtime import spans

        spans.trace_resolvers(schema)


def event_context(ctx: ServiceContext) -> dict[str, str]:
    """Fields to store with an accepted event: the accepting span's trace context, so the
    consumer can continue its trace (in any process, after a restart too)."""
    tracing = ctx.runtime.tracing
    return {} if tracing is None else tracing.carrier()
