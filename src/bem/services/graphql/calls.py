"""How resolvers reach the services: the service client, errors turned into GraphQL errors.

`ctx.call(operation, ...)`, the operation being the service's function itself, is an
in-process call when the service lives in this process and pooled HTTP to
a healthy replica otherwise (with the client's bounded per-hop time-out). A service's error
becomes a GraphQL error carrying the service's message (which names the offending field for
a 4xx) and `extensions {code, status, service, operation, field, details, retryAfter}`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from graphql import GraphQLError
from strawberry.types import Info

from bem.errors import BemError, ValidationFailed
from bem.runtime.runtime import ServiceContext
from bem.runtime.service import operation_of
from bem.services.graphql.convert import jsonable

R = TypeVar("R")


def service_context(info: Info) -> ServiceContext:
    return info.context["ctx"]  # type: ignore[no-any-return]


def _renamed(exc: BemError, arguments: Mapping[str, str]) -> tuple[str | None, str]:
    """(field, message) with the service's field named as the GraphQL argument that supplied
    it: {"graph_id": "projectContext.projectId"} turns `graph_id: no stored graph` into
    `projectContext.projectId: no stored graph`. The longest matching prefix wins."""
    field, message = exc.field, exc.message
    if not field:
        return field, message
    for prefix in sorted(arguments, key=len, reverse=True):
        if field == prefix or field.startswith((prefix + ".", prefix + "[")):
            renamed = arguments[prefix] + field[len(prefix):]
            if message.startswith(field):
                message = renamed + message[len(field):]
            return renamed, message
    return field, message


def backend_error(service: str, operation: str, exc: BemError,
                  arguments: Mapping[str, str] | None = None) -> GraphQLError:
    field, message = _renamed(exc, arguments or {})
    extensions: dict[str, Any] = {"code": exc.code, "status": exc.status, "service": service,
                                  "operation": operation}
    if field:
        extensions["field"] = field
    if exc.details:
        extensions["details"] = exc.details
    if "Retry-After" in exc.headers:
        extensions["retryAfter"] = exc.headers["Retry-After"]
    return GraphQLError(message, extensions=extensions, original_error=exc)


def argument_error(argument: str, message: str, cls: type[BemError] = ValidationFailed
                   ) -> GraphQLError:
    """An argument the gateway itself found wrong (the message starts with its name)."""
    exc = cls(f"{argument}: {message}", field=argument)
    return GraphQLError(exc.message, original_error=exc,
                        extensions={"code": exc.code, "status": exc.status, "field": argument})


async def call(info: Info, operation: Callable[..., Awaitable[R]], body: Any = None, *,
               arguments: Mapping[str, str] | None = None, **params: Any) -> R:
    """`operation` (a service's function) wherever it runs; its error as a GraphQL error,
    its field renamed by `arguments` (service field -> GraphQL argument) when the body was
    built from arguments of other names. `body` is usually a mapping: the client's JSON,
    validated by the service, whose errors name the field."""
    try:
        return await service_context(info).call(operation, body, **params)
    except BemError as exc:
        op = operation_of(operation)
        raise backend_error(op.service, op.name, exc, arguments) from None


async def call_json(info: Info, operation: Callable[..., Awaitable[Any]], body: Any = None, *,
                    arguments: Mapping[str, str] | None = None, **params: Any) -> Any:
    """The same, for answers carried whole as JSON."""
    return jsonable(await call(info, operation, body, arguments=arguments, **params))
