"""Tracing's entry points that cost nothing when tracing is off.

Tracing (OpenTelemetry, W3C trace context) is on when OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set or OTEL_TRACES_EXPORTER names an exporter
(`Settings.tracing`). Off, `build` returns None, every hook below is a `None` check, and
nothing imports the OpenTelemetry SDK (runtime/otel.py and runtime/spans.py are imported
only when it is on; `benchmarks/imports.py` shows the import cost this saves).

This module is imported by pool workers too (a `TracedFn` is unpickled there), so it must
stay light: no OpenTelemetry import at module level.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from bem.runtime.otel import Tracing
    from bem.runtime.runtime import Runtime
    from bem.runtime.service import ServiceContext
    from bem.runtime.spans import EventSpans
    from bem.settings import Settings

Handler = Callable[..., Awaitable[None]]
TRACEPARENT = "traceparent"  # the event field that keeps an accepted event's trace context


def build(settings: Settings, runtime: Runtime) -> Tracing | None:
    """The process's tracing, or None when no OTEL_* variable turns it on."""
    if not settings.tracing:
        return None
    from bem.runtime.otel import Tracing

    return Tracing(settings, runtime)


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


class TracedFn:
    """A pool task with its trace context, pickled to the worker.

    The worker does not export spans itself: it measures the task (wall clock, its pid) and
    returns that with the result; the parent records the span, as the child of the context
    it sent (runtime/spans.py). Workers then need no SDK, exporter thread or collector
    connection each, and a worker killed at its time limit loses no span: the parent still
    records its `pool.task`, with the error.
    """

    def __init__(self, fn: Callable[..., Any], traceparent: str) -> None:
        self.fn = fn
        self.traceparent = traceparent  # of the parent's pool.task span
        # What the pool's messages (a time-out, a crash) call the task: the function's name.
        self.__qualname__ = getattr(fn, "__qualname__", repr(fn))

    def __call__(self, *args: Any) -> tuple[Any, int, int, int]:
        start = time.time_ns()
        value = self.fn(*args)
        return value, start, time.time_ns(), os.getpid()
