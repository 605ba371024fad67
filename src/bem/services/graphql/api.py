"""graphql (8000): the gateway's HTTP entry point.

- `/graphql`: one GraphQL schema over every service (queries, mutations, and the `pulses`
  subscription over graphql-transport-ws); see `schema.py`.
- `/{service}/{path}`: REST routing to a replica of a backend service; see `routing.py`.
- API keys and per-client rate limiting on every route but health (`bem.gateway.access`).
"""

from __future__ import annotations

from typing import Any

import orjson
from cross_web import HTTPException as TransportError  # what strawberry's views raise
from fastapi import FastAPI
from fastapi.responses import Response
from strawberry import UNSET
from strawberry.fastapi import GraphQLRouter

from bem.errors import ERROR_TYPES, BemError, NotFound
from bem.gateway.access import install_access
from bem.runtime.app import error_response
from bem.runtime.service import ERROR_RESPONSES, ServiceContext, ServiceSpec
from bem.services.graphql.routing import METHODS, ROUTABLE, ROUTE, Router, RoutingMiddleware

service = ServiceSpec(
    name="graphql",
    title="BEM gateway: GraphQL and REST routing",
    description=(
        "The single entry point for clients. `POST /graphql` (or GET for queries) serves one "
        "GraphQL schema over every service, with a `pulses` subscription over the "
        "graphql-transport-ws WebSocket protocol at the same path. `/{service}/{path}` "
        "forwards a REST request to a healthy replica of that service "
        f"({', '.join(ROUTABLE)}): round-robin, failing replicas ejected for a while, "
        "idempotent requests retried once on another replica. API keys (BEM_API_KEYS) and a "
        "token bucket per client (RATE_LIMIT_RPS, RATE_LIMIT_BURST) apply to every route "
        "except health."),
    gateway=True,
    subscribes=True,
)


class _GraphQLRouter(GraphQLRouter):  # type: ignore[type-arg]
    """Strawberry's router, with its transport errors (bad JSON, too big a batch) in the
    platform's error shape instead of plain text."""

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            return await super().run(request, context=context, root_value=root_value)
        except TransportError as exc:
            cls = next((c for c in ERROR_TYPES.values() if c.status == exc.status_code),
                       BemError)
            raise cls(f"GraphQL request refused: {exc.reason}") from None

    def decode_json(self, data: str | bytes) -> object:
        # orjson, not the stdlib's recursive decoder: JSON nested ~1000 levels deep raised
        # RecursionError (a 500); orjson refuses it with a JSONDecodeError (a 400).
        value = orjson.loads(data)
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


@service.setup
def _setup(app: FastAPI, ctx: ServiceContext) -> None:
    # Imported here: building the schema is work only a process serving the gateway does.
    from bem.services.graphql.schema import MAX_SUBSCRIPTIONS, schema

    async def context() -> dict[str, Any]:  # async: a sync one would run in a thread
        return {"ctx": ctx}

    # Inside the access middleware (keys and rate limits apply), before FastAPI's routing.
    app.add_middleware(RoutingMiddleware, router=Router(ctx))
    install_access(app, ctx)
    # No GraphiQL page: it loads its scripts from a CDN. Any GraphQL client works, and
    # introspection is on.
    app.include_router(_GraphQLRouter(
        schema, path="/graphql", graphql_ide=None, context_getter=context,
        max_subscriptions_per_connection=MAX_SUBSCRIPTIONS), tags=["graphql"],
        responses={400: ERROR_RESPONSES[400], 413: ERROR_RESPONSES[413]})

    async def forward(service: str, path: str) -> Response:
        """Forward to a replica of `service` (its own API: see its /docs)."""
        # RoutingMiddleware forwards every routable service before FastAPI routes anything:
        # what reaches this endpoint names no routable service. The routes document the
        # forwarding in the OpenAPI description.
        return error_response(NotFound(
            f"no service {service!r} behind the gateway; routable services: "
            f"{', '.join(ROUTABLE)}", field="service"))

    for method in METHODS:  # one route per method: each gets its own OpenAPI operation id
        app.add_api_route(
            ROUTE, forward, methods=[method], tags=["routing"],
            response_class=Response, name=f"route_{method.lower()}",
            operation_id=f"route_{method.lower()}",
            responses={404: ERROR_RESPONSES[422] | {"description": "unknown service"},
                       503: ERROR_RESPONSES[503], 504: {"description": "the replica timed out"},
                       "default": {"description": "whatever the service answers (its docs)"}})
