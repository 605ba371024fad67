"""graphql (8000): the gateway's HTTP entry point.

- `/graphql`: one GraphQL schema over every service (queries, mutations, and the `pulses`
  subscription over graphql-transport-ws); see `schema.py`.
- `/{service}/{path}`: REST routing to a replica of a backend service; see `bem/gateway/routing.py`.
- `/ws/cytoscape`: the old platform's live stream of pulses and graph changes; see
  `cytoscape.py` (its old GraphQL operations are deprecated fields of the schema).
- API keys and per-client rate limiting on every route but health (`bem.gateway.access`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from cross_web import HTTPException as TransportError  # what strawberry's views raise
from fastapi import FastAPI
from fastapi.responses import Response
from strawberry import UNSET
from strawberry.exceptions import MissingQueryError
from strawberry.fastapi import GraphQLRouter
from strawberry.http import process_result
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from bem.clusters import PLACEMENT
from bem.errors import ERROR_TYPES, BemError, NotFound
from bem.gateway import Gateway
from bem.gateway.access import install_access
from bem.gateway.routing import (
    METHODS,
    ROUTE,
    Router,
    RoutingMiddleware,
    read_body,
    send_error,
)
from bem.runtime.handlers import error_response
from bem.runtime.runtime import ServiceContext
from bem.runtime.service import ERROR_RESPONSES, ServiceSpec
from bem.runtime.tracing import trace_resolvers
from bem.services import spec

service = ServiceSpec(
    name="graphql",
    title="BEM gateway: GraphQL and REST routing",
    description=(
        "The single entry point for clients. `POST /graphql` (or GET for queries) serves one "
        "GraphQL schema over every service, with a `pulses` subscription over the "
        "graphql-transport-ws WebSocket protocol at the same path. `/{service}/{path}` "
        "forwards a REST request to a healthy replica of that service "
        f"({', '.join(PLACEMENT.routable())}): round-robin, failing replicas ejected for a while, "
        "idempotent requests retried once on another replica. API keys (BEM_API_KEYS) and a "
        "token bucket per client (RATE_LIMIT_RPS, RATE_LIMIT_BURST) apply to every route "
        "except health. For the old platform's clients: its GraphQL operations are "
        "deprecated fields of the schema, and `ws://HOST:PORT/ws/cytoscape` streams pulses "
        "and graph changes as its old server did (docs/migration.md)."),
    subscribes=True,
)


class _GraphQLRouter(GraphQLRouter):  # type: ignore[type-arg]
    """Strawberry's router, with its transport errors (bad JSON, too big a batch) in the
    platform's error shape instead of plain text."""

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            return await super().run(request, context=context, root_value=root_value)
        except TransportError as exc:
            raise _refused(exc) from None

    def decode_json(self, data: str | bytes) -> object:
        return operations_of(data)


def operations_of(data: str | bytes) -> Any:
    """A GraphQL request body: one operation (an object) or a batch (an array of them)."""
    # orjson, not the stdlib's recursive decoder: JSON nested ~1000 levels deep raised
    # RecursionError (a 500); orjson refuses it with a JSONDecodeError (a 400).
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise TransportError(400, "Unable to parse request body as JSON") from None
    # Strawberry reads any other JSON value as an operation and fails on it (a 500).
    operations = value if isinstance(value, list) else [value]
    odd = [op for op in operations if not isinstance(op, dict)]
    if odd or not operations:
        got = _json_kind(odd[0]) if odd else "an empty array"
        raise TransportError(400, "expected a JSON object (one operation) or an array "
                                  f"of objects (a batch), got {got}")
    return value


def _json_kind(value: object) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number",
             list: "an array", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _refused(exc: TransportError) -> BemError:
    cls = next((c for c in ERROR_TYPES.values() if c.status == exc.status_code), BemError)
    return cls(f"GraphQL request refused: {exc.reason}")


class GraphQLPost:
    """`POST /graphql` with a JSON body, executed before FastAPI's routing (ASGI).

    The common request of every GraphQL client costs strawberry's FastAPI route (its
    dependencies, request adapters and response classes) ~0.28 ms of CPU, more than executing
    a small query; here it is read, checked and answered directly, with strawberry's own
    execution (`schema.execute`, its extensions and limits) and result shape
    (`process_result`), and the same 400s for what is no operation. Everything else on
    `/graphql` (GET, other content types, streamed subscriptions, the WebSocket) goes on to
    strawberry's router.
    """

    def __init__(self, app: Any, ctx: ServiceContext, schema: Any) -> None:
        self.app = app
        self.ctx = ctx
        self.schema = schema
        self.max_operations = schema.config.batching_config["max_operations"]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not _plain_post(scope):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client left
        try:
            answer = await self._answer(body)
        except TransportError as exc:
            await send_error(send, _refused(exc))
            return
        data = orjson.dumps(answer)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def _answer(self, body: bytes) -> Any:
        value = operations_of(body)
        if isinstance(value, dict):
            return process_result(await self._execute(value))
        if len(value) > self.max_operations:
            raise TransportError(400, "Too many operations")
        results = await asyncio.gather(*(self._execute(op) for op in value))
        return [process_result(r) for r in results]

    async def _execute(self, operation: dict[str, Any]) -> Any:
        query, variables = operation.get("query"), operation.get("variables")
        extensions = operation.get("extensions")
        if not isinstance(query, str | None):
            raise TransportError(400, "The GraphQL operation's `query` must be a string or "
                                      "null, if provided.")
        for name, value in (("variables", variables), ("extensions", extensions)):
            if not isinstance(value, dict | None):
                raise TransportError(400, f"The GraphQL operation's `{name}` must be an "
                                          f"object or null, if provided.")
        try:
            return await self.schema.execute(
                query, variable_values=variables, context_value={"ctx": self.ctx},
                operation_name=operation.get("operationName"),
                allowed_operation_types=POST_OPERATIONS, operation_extensions=extensions)
        except CannotGetOperationTypeError as exc:
            raise TransportError(400, exc.as_http_error_reason()) from None
        except InvalidOperationTypeError as exc:
            raise TransportError(400, exc.as_http_error_reason("POST")) from None
        except MissingQueryError:
            raise TransportError(400, "No GraphQL query found in the request") from None


POST_OPERATIONS = OperationType.from_http("POST")


def _plain_post(scope: Any) -> bool:
    """POST /graphql, a JSON body, and no streamed answer asked for (multipart, SSE)."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/graphql":
        return False
    headers = dict(scope["headers"])
    accept = headers.get(b"accept", b"")
    return (b"application/json" in headers.get(b"content-type", b"")
            and b"multipart/mixed" not in accept and b"text/event-stream" not in accept)


@service.setup
def _setup(app: FastAPI, ctx: ServiceContext) -> None:
    # Imported here: building the schema is work only a process serving the gateway does.
    from bem.services.graphql import cytoscape
    from bem.services.graphql.schema import MAX_SUBSCRIPTIONS, schema

    trace_resolvers(ctx, schema)

    async def context() -> dict[str, Any]:  # async: a sync one would run in a thread
        return {"ctx": ctx}

    # Inside the access middleware (keys and rate limits apply), before FastAPI's routing;
    # routing outside the GraphQL layer, so that a routed request crosses one layer fewer.
    app.add_middleware(GraphQLPost, ctx=ctx, schema=schema)
    app.add_middleware(RoutingMiddleware, router=Router(ctx, spec))
    install_access(app, ctx.settings, Gateway.of(ctx.runtime).buckets)
    # No GraphiQL page: it loads its scripts from a CDN. Any GraphQL client works, and
    # introspection is on.
    app.include_router(_GraphQLRouter(
        schema, path="/graphql", graphql_ide=None, context_getter=context,
        max_subscriptions_per_connection=MAX_SUBSCRIPTIONS), tags=["graphql"],
        responses={400: ERROR_RESPONSES[400], 413: ERROR_RESPONSES[413]})
    cytoscape.install(app, ctx)  # before the catch-all routes below

    async def forward(service: str, path: str) -> Response:
        """Forward to a replica of `service` (its own API: see its /docs)."""
        # RoutingMiddleware forwards every routable service before FastAPI routes anything:
        # what reaches this endpoint names no routable service. The routes document the
        # forwarding in the OpenAPI description.
        return error_response(NotFound(
            f"no service {service!r} behind the gateway; routable services: "
            f"{', '.join(ctx.runtime.placement.routable())}", field="service"))

    for method in METHODS:  # one route per method: each gets its own OpenAPI operation id
        app.add_api_route(
            ROUTE, forward, methods=[method], tags=["routing"],
            response_class=Response, name=f"route_{method.lower()}",
            operation_id=f"route_{method.lower()}",
            responses={404: ERROR_RESPONSES[422] | {"description": "unknown service"},
                       503: ERROR_RESPONSES[503], 504: {"description": "the replica timed out"},
                       "default": {"description": "whatever the service answers (its docs)"}})
