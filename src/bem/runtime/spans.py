"""Where spans are made: requests, service calls, pool tasks, cache lookups, WebSocket
messages, GraphQL resolvers and the event log's consumer. Imported only when tracing is on.

One trace has the same shape in every topology. A request is a SERVER span named
`METHOD /route` on the port that serves it. A service-client call is a CLIENT span
`service.operation` of the caller, and under it a SERVER span of the callee named and
attributed exactly as that port's middleware names its requests: over HTTP the middleware
makes it (the context travels in the `traceparent` header), in-process the client does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from strawberry.extensions import SchemaExtension

from bem.errors import BemError
from bem.runtime.client import ServiceClient
from bem.runtime.metrics import SHARED
from bem.runtime.trace_carry import TRACEPARENT, TracedFn

ServiceContext = Any  # bem.runtime.runtime.ServiceContext (runtime/tracing.py says why)

if TYPE_CHECKING:
    from bem.runtime.otel import Tracing
    from bem.runtime.service import Operation

# Probes, scrapes and the dashboard's reads of the span buffer, many a minute on every
# port: spans of them would bury the requests.
UNTRACED = frozenset({"/health", "/health/live", "/health/ready", "/metrics", "/traces/local",
                      "/traces", "/traces/slowest"})
# Requests answered before FastAPI routes them (the gateway's GraphQL and REST routing) are
# named by their first path segment when it is a service or `graphql`, else `unmatched`.


def current_service() -> str:
    """The service of the current span (pool and cache work belong to whoever asked)."""
    span = trace.get_current_span()
    attributes = getattr(span, "attributes", None) or {}
    return str(attributes.get("bem.service", SHARED))


def _server_status(span: Any, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:  # a 4xx is the client's error, not the server's (semantic conventions)
        span.set_status(Status(StatusCode.ERROR))


class TraceMiddleware:
    """The SERVER span of each HTTP request (pure ASGI, outermost)."""

    def __init__(self, app: Any, tracing: Tracing, service: str) -> None:
        self.app = app
        self.tracing = tracing
        self.service = service
        self.named = frozenset({*tracing.services, "graphql"})

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        # A request forwarded in-process (the gateway's routing calls this app without a
        # socket) continues the current span; one from a socket continues its traceparent.
        parent = None if trace.get_current_span().get_span_context().is_valid else \
            self.tracing.extract({k.decode("latin-1"): v.decode("latin-1")
                                  for k, v in scope["headers"] if k == b"traceparent"})
        method = scope["method"]
        status = 500

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.tracing.start(self.service, method, kind=SpanKind.SERVER, context=parent,
                                attributes={"http.request.method": method}) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                route = _route_of(scope, self.named)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                _server_status(span, status)


def _route_of(scope: Mapping[str, Any], named: frozenset[str]) -> str:
    template = getattr(scope.get("route"), "path", None)
    if template:
        return str(template)
    first = scope["path"].split("/", 2)[1] if scope["path"].startswith("/") else ""
    return f"/{first}" if first in named else "unmatched"


class TracedClient(ServiceClient):
    """The service client with a CLIENT span per call and, for a local peer, the peer's
    SERVER span (what the peer's middleware would have made had the call gone over HTTP)."""

    def __init__(self, tracing: Tracing, *args: Any) -> None:
        super().__init__(*args)
        self.tracing = tracing

    async def call(self, operation: Callable[..., Awaitable[Any]], body: Any = None, /, *,
                   caller: str = "client", **params: Any) -> Any:
        op = (self._routes.get((caller, operation)) or self._route(caller, operation))[0]
        attributes = {"rpc.system": "bem", "rpc.service": op.service, "rpc.method": op.name}
        with self.tracing.start(caller, f"{op.service}.{op.name}", kind=SpanKind.CLIENT,
                                attributes=attributes):
            return await super().call(operation, body, caller=caller, **params)

    def _route(self, caller: str, operation: Callable[..., Any]) -> Any:
        op, ctx, ok, error = super()._route(caller, operation)
        if ctx is not None:
            op = dataclasses.replace(op, fn=_served(op, ctx))
            self._routes[caller, operation] = (op, ctx, ok, error)
        return op, ctx, ok, error


def _served(op: Operation, ctx: ServiceContext) -> Callable[..., Awaitable[Any]]:
    tracing = ctx.runtime.tracing
    assert tracing is not None
    fn = op.fn
    ok = next((getattr(r, "status_code", None) for r in ctx.spec.router.routes
               if getattr(r, "name", None) == op.name), None) or 200
    name = f"{op.method} {op.path}"
    attributes = {"http.request.method": op.method, "http.route": op.path}

    async def served(**kwargs: Any) -> Any:
        with tracing.start(ctx.name, name, kind=SpanKind.SERVER, attributes=attributes,
                           record_exception=False, set_status_on_exception=False) as span:
            try:
                result = await fn(**kwargs)
            except BemError as exc:
                _server_status(span, exc.status)
                raise
            except Exception as exc:
                span.record_exception(exc)
                _server_status(span, 500)
                raise
            _server_status(span, ok)
            return result

    return served


async def pool_task(tracing: Tracing, run: Callable[..., Awaitable[Any]],
                    fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
                    ) -> Any:
    """`pool.task` (the wait for a worker and the round trip) and, under it, `pool.execute`
    (the task in the worker, as the worker measured it: see `TracedFn`)."""
    service = current_service()
    task = getattr(fn, "__qualname__", repr(fn))
    with tracing.start(service, "pool.task", attributes={"bem.pool.task": task}) as span:
        traced = TracedFn(fn, tracing.carrier().get(TRACEPARENT, ""))
        value, start, end, pid = await run(traced, *args, timeout=timeout)
        if not span.is_recording():
            return value
        tracing.tracer(service).start_span(
            "pool.execute", context=trace.set_span_in_context(span), start_time=start,
            attributes={"bem.service": service, "bem.pool.task": task,
                        "bem.pool.worker_pid": pid}).end(end_time=end)
        return value


async def cache_lookup(tracing: Tracing, lookup: Callable[[str], Awaitable[Any]],
                       key: str) -> Any:
    """`cache.lookup` with the level that answered (`l1`, `redis` or `miss`)."""
    operation = key.split(":")[2] if key.count(":") >= 3 else ""
    with tracing.start(current_service(), "cache.lookup",
                       attributes={"bem.cache.operation": operation}) as span:
        value, level = await lookup(key)
        span.set_attribute("bem.cache.level", level)
        return value, level


Handler = Callable[..., Awaitable[None]]


def ws_handler(tracing: Tracing, service: str, handler: Handler) -> Handler:
    """A root SERVER span per WebSocket message (each message is its own request)."""

    async def traced(ctx: Any, conn: Any, frame: Mapping[str, Any]) -> None:
        size = len(frame.get("text") or frame.get("bytes") or "")
        path = conn.ws.scope.get("path", "")
        with tracing.start(service, f"WS {path} message", kind=SpanKind.SERVER,
                           context=otel_context.Context(),
                           attributes={"bem.ws.connection": conn.id,
                                       "bem.ws.message_bytes": size}):
            await handler(ctx, conn, frame)

    return traced


class EventSpans:
    """The consumer's spans. A batch is a CONSUMER span of its own trace that links to the
    span that accepted each of its events; each event gets a `callback_engine.process` span
    in the trace of the request that accepted it (its context was stored with the event, so
    this holds in any process and after a restart), and under it `pulses.publish` for the
    step that stores its result and publishes its pulses."""

    def __init__(self, tracing: Tracing, service: str) -> None:
        self.tracing = tracing
        self.service = service
        self._open: dict[str, Any] = {}

    async def consume(self, entries: list[Any], prior: dict[str, int],
                      handle: Callable[..., Awaitable[None]]) -> None:
        tracing, tracer = self.tracing, self.tracing.tracer(self.service)
        accepted = {e.event_id: tracing.extract({TRACEPARENT: e.event[TRACEPARENT]})
                    for e in entries if TRACEPARENT in e.event}
        links = [Link(trace.get_current_span(c).get_span_context()) for c in accepted.values()]
        with tracing.start(self.service, "callback_engine.batch", kind=SpanKind.CONSUMER,
                           context=otel_context.Context(), links=links,
                           attributes={"bem.events": len(entries)}) as batch:
            to_batch = [Link(batch.get_span_context())]
            for entry in entries:
                parent = accepted.get(entry.event_id)
                if parent is None:
                    continue
                self._open[entry.event_id] = tracer.start_span(
                    "callback_engine.process", context=parent, kind=SpanKind.CONSUMER,
                    links=to_batch, attributes={
                        "bem.service": self.service, "bem.event.id": entry.event_id,
                        "bem.event.type": str(entry.event.get("type"))})
            try:
                await handle(entries, prior)
            finally:
                for entry in entries:
                    span = self._open.pop(entry.event_id, None)
                    if span is not None:
                        span.end()

    async def finish(self, done: list[Any], finish: Callable[[list[Any]], Awaitable[list[bool]]]
                     ) -> list[bool]:
        tracer = self.tracing.tracer(self.service)
        spans = []
        for f in done:
            process = self._open.get(f.entry.event_id)
            if process is None:
                continue
            process.set_attribute("bem.event.status", f.status)
            spans.append(tracer.start_span(
                "pulses.publish", context=trace.set_span_in_context(process),
                kind=SpanKind.PRODUCER, attributes={"bem.service": self.service,
                                                    "bem.pulses": len(f.pulses)}))
        try:
            return await finish(done)
        finally:
            for span in spans:
                span.end()


class ResolverSpans(SchemaExtension):
    """A span per GraphQL resolver the schema defines (not per plain field: those are
    attribute reads), in the gateway's process."""

    def resolve(self, _next: Callable[..., Any], root: Any, info: Any, *args: Any,
                **kwargs: Any) -> Any:
        ctx = info.context.get("ctx") if isinstance(info.context, dict) else None
        tracing = None if ctx is None else ctx.runtime.tracing
        if tracing is None or _plain_field(info) or info.operation.operation.value == \
                "subscription":
            return _next(root, info, *args, **kwargs)
        return self._traced(tracing, ctx.name, _next, root, info, args, kwargs)

    @staticmethod
    async def _traced(tracing: Tracing, service: str, _next: Callable[..., Any], root: Any,
                      info: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        name = f"{info.parent_type.name}.{info.field_name}"
        with tracing.start(service, f"graphql.resolve {name}",
                           attributes={"graphql.field.name": name}):
            result = _next(root, info, *args, **kwargs)
            if isawaitable(result):
                result = await result
            return result


def _plain_field(info: Any) -> bool:
    from strawberry.extensions.tracing.utils import should_skip_tracing

    return should_skip_tracing(None, info)  # type: ignore[arg-type]  # it reads info only


def trace_resolvers(schema: Any) -> None:
    """Add ResolverSpans to the gateway's schema (once; it does nothing for a process
    whose tracing is off, so a schema shared by in-process test clusters stays right)."""
    if ResolverSpans not in schema.extensions:
        schema.extensions = [*schema.extensions, ResolverSpans]


ROOTS_PER_SERVICE = 5
MAX_TRACE_IDS = 50


def install_local_traces(app: Any, tracing: Tracing) -> None:
    """`GET /traces/local` on every port: without `trace_ids`, the slowest traces that began
    in this process (their root spans, ROOTS_PER_SERVICE per service); with `trace_ids`
    (comma-separated), every span this process holds of those traces."""
    from fastapi import Query
    from fastapi.responses import Response

    from bem.errors import ValidationFailed

    @app.get("/traces/local", tags=["health"], response_class=Response)
    async def local_traces(trace_ids: str | None = Query(None)) -> Response:
        import orjson

        if trace_ids is None:
            body = {"roots": tracing.buffer.roots(ROOTS_PER_SERVICE)}
        else:
            ids = [t for t in trace_ids.split(",") if t]
            if len(ids) > MAX_TRACE_IDS or not all(
                    len(t) == 32 and all(c in "0123456789abcdef" for c in t) for t in ids):
                raise ValidationFailed(
                    f"trace_ids: up to {MAX_TRACE_IDS} trace ids of 32 lowercase hex digits, "
                    f"comma-separated", field="trace_ids")
            body = {"spans": tracing.buffer.of_traces(ids)}
        return Response(orjson.dumps(body), media_type="application/json",
                        headers={"Cache-Control": "no-store"})
