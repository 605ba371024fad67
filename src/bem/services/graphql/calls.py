"""How resolvers reach the services: the service client, errors turned into GraphQL errors.

`ctx.call` is an in-process call when the service lives in this process and pooled HTTP to
a healthy replica otherwise (with the client's bounded per-hop time-out). A service's error
becomes a GraphQL error carrying the service's message (which names the offending field for
a 4xx) and `extensions {code, status, service, operation, field, details, retryAfter}`.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from strawberry.types import Info

from bem.errors import BemError
from bem.runtime.service import ServiceContext
from bem.services.graphql.convert import jsonable


def service_context(info: Info) -> ServiceContext:
    return info.context["ctx"]  # type: ignore[no-any-return]


def backend_error(service: str, operation: str, exc: BemError) -> GraphQLError:
    extensions: dict[str, Any] = {"code": exc.code, "status": exc.status, "service": service,
                                  "operation": operation}
    if exc.field:
        extensions["field"] = exc.field
    if exc.details:
        extensions["details"] = exc.details
    if "Retry-After" in exc.headers:
        extensions["retryAfter"] = exc.headers["Retry-After"]
    return GraphQLError(exc.message, extensions=extensions, original_error=exc)


async def call(info: Info, service: str, operation: str, payload: Any = None) -> Any:
    """`operation` of `service` wherever it runs; its error as a GraphQL error."""
    try:
        return await service_context(info).call(service, operation, payload)
    except BemError as exc:
        raise backend_error(service, operation, exc) from None


async def call_json(info: Info, service: str, operation: str, payload: Any = None) -> Any:
    """The same, for answers carried whole as JSON."""
    return jsonable(await call(info, service, operation, payload))
