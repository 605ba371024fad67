"""How a service is defined: a `ServiceSpec` with named operations.

An operation is an ordinary FastAPI endpoint registered with `@spec.operation(...)`:

    @spec.operation("POST", "/analyze", idempotent=True)
    async def analyze(body: AnalyzeRequest, ctx: Ctx) -> AnalyzeResult: ...

Its signature says everything the service client needs: the pydantic body model, path and
query parameters, and the response type. So one definition serves HTTP (the FastAPI route)
and in-process calls (`ctx.call("graph_runtime", "analyze", payload)` calls the function
directly when the peer lives in the same process).

A spec is static and cheap to import: it never starts anything. Heavy compute modules are
imported by the operations at call time (and pre-imported by the runtime for local
services), so a process that only calls a service remotely never loads NumPy for it.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from bem.errors import BemError, ValidationFailed

if TYPE_CHECKING:
    from bem.runtime.runtime import Runtime
    from bem.settings import Settings


class ServiceContext:
    """What an operation sees: its service, the process runtime and its own state."""

    def __init__(self, spec: ServiceSpec, runtime: Runtime) -> None:
        self.spec = spec
        self.name = spec.name
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.state: dict[str, Any] = {}  # filled by the service's lifespan hook
        self.app: FastAPI | None = None  # set by create_app (ASGI calls without a socket)

    async def call(self, service: str, operation: str, payload: Any = None) -> Any:
        """Call a peer's operation wherever it runs (in-process or over HTTP)."""
        return await self.runtime.client.call(service, operation, payload, caller=self.name)


async def _context(request: Request) -> ServiceContext:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, and that hop (a
    # thread wake-up and a GIL hand-over, up to the 5 ms switch interval under load) cost
    # more than the rest of a small request.
    return request.app.state.ctx  # type: ignore[no-any-return]


Ctx = Annotated[ServiceContext, Depends(_context)]


class ErrorBody(BaseModel):
    """Every error answer: a stable code, a message naming the field or problem."""

    error: str
    message: str
    field: str | None = None
    details: list[dict[str, Any]] = []


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed request (e.g. invalid JSON)"},
    404: {"model": ErrorBody, "description": "what the request names (a graph, formula, "
                                             "event, type...) does not exist"},
    413: {"model": ErrorBody, "description": "body, graph or expression over its size limit"},
    422: {"model": ErrorBody, "description": "invalid input; `field` names the offending field"},
    503: {"model": ErrorBody, "description": "a dependency is unavailable; retry later"},
    507: {"model": ErrorBody, "description": "storage full (the embedded graph store or "
                                             "event log, or Redis at its maxmemory)"},
}


@dataclass(frozen=True)
class Operation:
    service: str
    name: str
    method: str
    path: str
    fn: Callable[..., Any]
    body_param: str | None
    body_model: type[BaseModel] | None
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    param_adapters: Mapping[str, TypeAdapter[Any]]
    response: TypeAdapter[Any]
    idempotent: bool
    str_params: frozenset[str] = frozenset()
    params: tuple[str, ...] = ()  # path then query parameter names
    summary: str = ""

    @classmethod
    def from_function(cls, service: str, method: str, path: str, fn: Callable[..., Any],
                      idempotent: bool) -> Operation:
        hints = typing.get_type_hints(fn, include_extras=True)
        in_path = set(re.findall(r"{(\w+)}", path))
        body_param = body_model = None
        path_params: list[str] = []
        query_params: list[str] = []
        adapters: dict[str, TypeAdapter[Any]] = {}
        for name in inspect.signature(fn).parameters:
            hint = hints.get(name)
            if _is_context(hint) or _is_response(hint):
                continue
            if inspect.isclass(hint) and issubclass(hint, BaseModel):
                body_param, body_model = name, hint
                continue
            (path_params if name in in_path else query_params).append(name)
            adapters[name] = TypeAdapter(hint)
        return cls(service=service, name=fn.__name__, method=method, path=path, fn=fn,
                   body_param=body_param, body_model=body_model,
                   path_params=tuple(path_params), query_params=tuple(query_params),
                   param_adapters=adapters, response=TypeAdapter(hints.get("return", Any)),
                   str_params=frozenset(n for n in adapters if hints.get(n) is str),
                   params=(*path_params, *query_params),
                   idempotent=idempotent,
                   summary=(inspect.getdoc(fn) or "").split("\n", 1)[0])

    def bind(self, payload: Any) -> dict[str, Any]:
        """Turn a call payload into the function's keyword arguments, validating like HTTP.

        The payload is the body model instance, or a mapping holding path/query parameters
        by name and the body's fields.
        """
        if self.body_model is not None and isinstance(payload, self.body_model):
            return {self.body_param: payload}  # type: ignore[dict-item]
        data = _fields(payload)
        kwargs: dict[str, Any] = {}
        try:
            for name in self.params:
                if name in data:
                    value = data.pop(name)
                    # A str for a str parameter needs no adapter: the hot path of most calls.
                    kwargs[name] = value if type(value) is str and name in self.str_params \
                        else self.param_adapters[name].validate_python(value)
            if self.body_model is not None and self.body_param is not None:
                kwargs[self.body_param] = self.body_model.model_validate(data)
        except PydanticValidationError as exc:
            prefix = ("body",) if self.body_model is not None else ("query",)
            raise validation_failed(exc.errors(), prefix) from None
        return kwargs

    def split(self, payload: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """(path params, query params, JSON body) of a payload, for an HTTP call."""
        if self.body_model is not None and isinstance(payload, self.body_model):
            return {}, {}, payload.model_dump(mode="json")
        data = _fields(payload)
        path = {k: data.pop(k) for k in self.path_params if k in data}
        query = {k: data.pop(k) for k in self.query_params if k in data}
        return path, query, (data if self.body_model is not None else None)


def _fields(payload: Any) -> dict[str, Any]:
    """A call payload's fields. Anything but a mapping is the caller's error (422): the
    gateway passes a GraphQL client's JSON argument through as a payload."""
    if type(payload) is dict:  # the common case, before the (slow) ABC check below
        return payload.copy()
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise ValidationFailed(f"body: must be a JSON object, not {type(payload).__name__}",
                               field="body")
    return dict(payload)


def _is_context(hint: Any) -> bool:
    return typing.get_origin(hint) is Annotated and typing.get_args(hint)[0] is ServiceContext


def _is_response(hint: Any) -> bool:
    """A `Response` parameter is FastAPI's way to set a status or header from the operation
    (the dashboard answers 503 on fail); in-process calls leave it at its default, None."""
    return inspect.isclass(hint) and issubclass(hint, Response)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'graph', 'nodes', 0, 'id') -> 'graph.nodes[0].id' (the transport part dropped)."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("body",) and not parts:
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


def validation_failed(errors: list[Any] | tuple[Any, ...], prefix: tuple[str, ...] = ()
                      ) -> ValidationFailed:
    """One ValidationFailed from pydantic errors, naming every offending field."""
    details = []
    for err in errors:
        loc = (*prefix, *err.get("loc", ()))
        details.append({"field": field_path(loc), "message": err.get("msg", "invalid"),
                        "type": err.get("type", "value_error")})
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    if len(details) > 5:
        message += f"; and {len(details) - 5} more"
    return ValidationFailed(message or "invalid input",
                            field=details[0]["field"] if details else None, details=details)


@dataclass(frozen=True)
class OldPayload:
    """A payload of the old platform that `POST /process` still accepts (runtime/legacy.py).

    `serve(payload, ctx, key)` answers the old `results`, computed by the service's new
    operations; `key` identifies the envelope (equal for an identical resend), for
    idempotency keys. The pydantic `model` validates the payload and documents it.
    """

    name: str  # the old operation, e.g. "sfde_requests": the metric label and OpenAPI title
    model: type[BaseModel]
    serve: Callable[[Any, ServiceContext, str], Awaitable[dict[str, Any]]]


Lifespan = Callable[[ServiceContext], AbstractAsyncContextManager[None]]
HealthCheck = Callable[[ServiceContext], Mapping[str, dict[str, Any]]]
AppSetup = Callable[[FastAPI, ServiceContext], None]


@dataclass
class ServiceSpec:
    """The static definition of one service. See the module docstring."""

    name: str
    title: str
    description: str
    uses_pool: bool = False
    subscribes: bool = False  # consumes the pulse bus: its process listens from start-up
    compute_modules: tuple[str, ...] = ()
    legacy_operation: str | None = None  # the new body `POST /process` accepts in `data`
    legacy_payloads: tuple[OldPayload, ...] = ()  # the old payloads it accepts there too
    operations: dict[str, Operation] = field(default_factory=dict)
    router: APIRouter = field(default_factory=APIRouter)
    lifespans: list[Lifespan] = field(default_factory=list)
    health_checks: list[HealthCheck] = field(default_factory=list)
    setups: list[AppSetup] = field(default_factory=list)

    def operation(self, method: str, path: str, *, idempotent: bool | None = None,
                  status_code: int = 200, tags: list[str] | None = None,
                  responses: dict[int | str, dict[str, Any]] | None = None,
                  exclude_none: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register an endpoint that is also callable through the service client.

        `idempotent` (default: GET) lets the client and gateway retry it on another replica;
        `exclude_none` leaves absent optional fields out of the JSON answer.
        """
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            op = Operation.from_function(self.name, method, path, fn,
                                         method == "GET" if idempotent is None else idempotent)
            if op.name in self.operations:
                raise ValueError(f"{self.name}: operation {op.name!r} defined twice")
            self.operations[op.name] = op
            self.router.add_api_route(
                path, fn, methods=[method], name=op.name, status_code=status_code,
                tags=tags or [self.name], responses={**ERROR_RESPONSES, **(responses or {})},
                response_model_exclude_none=exclude_none)
            return fn
        return register

    def lifespan(self, fn: Callable[[ServiceContext], AsyncIterator[None]]) -> Lifespan:
        """Register an async-generator hook run around the service's lifetime."""
        from contextlib import asynccontextmanager

        hook = asynccontextmanager(fn)
        self.lifespans.append(hook)
        return hook

    def health_check(self, fn: HealthCheck) -> HealthCheck:
        """Register a function returning extra `component:measurement` health checks."""
        self.health_checks.append(fn)
        return fn

    def setup(self, fn: AppSetup) -> AppSetup:
        """Register a hook that adds non-operation routes (WebSocket, GraphQL, HTML)."""
        self.setups.append(fn)
        return fn

    def get(self, operation: str) -> Operation:
        try:
            return self.operations[operation]
        except KeyError:
            known = ", ".join(sorted(self.operations)) or "none"
            raise BemError(f"{self.name} has no operation {operation!r} (known: {known})"
                           ) from None
