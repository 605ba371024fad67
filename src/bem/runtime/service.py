"""How a service is defined: a `ServiceSpec` with named operations.

An operation is an ordinary FastAPI endpoint registered with `@spec.operation(...)`:

    @spec.operation("POST", "/analyze", idempotent=True)
    async def analyze(body: AnalyzeRequest, ctx: Ctx) -> AnalyzeResult: ...

Its signature says everything the service client needs: the pydantic body model, path and
query parameters, and the response type. So one definition serves HTTP (the FastAPI route)
and in-process calls: a peer calls the function by reference,
`await ctx.call(analyze, AnalyzeRequest(...))`, which runs it directly when the peer lives
in the same process and over HTTP otherwise, and returns an `AnalyzeResult` either way.
Parameters an in-process call could not supply as HTTP would (headers, cookies,
dependencies other than `Ctx`, a second body) are refused when the operation is defined.

A spec is static and cheap to import: it never starts anything. Heavy compute modules are
imported by the operations at call time, so a process that only calls a service remotely
never loads NumPy for it; one hosting it imports them in a thread once it is ready
(`Runtime.warm`), and the pool's forkserver pre-imports them (`compute_modules`).
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Request, Response, WebSocket
from fastapi import params as fastapi_params
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from bem.errors import BemError, ValidationFailed

# A service's hooks and old-payload servers take its ServiceContext (bem.runtime.runtime,
# which imports this module: here it is `Any`, so that no import goes back up).
Context = Any


async def request_context(request: Request) -> Any:
    """The FastAPI dependency behind `Ctx`: the ServiceContext of the request's app."""
    # async on purpose: FastAPI runs a sync dependency in its thread pool, and that hop (a
    # thread wake-up and a GIL hand-over, up to the 5 ms switch interval under load) cost
    # more than the rest of a small request.
    ctx = request.app.state.ctx
    if not ctx.warmed.is_set():
        await ctx.warmed.wait()
    return ctx


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
        for name, param in inspect.signature(fn).parameters.items():
            hint = hints.get(name)
            if _is_context(hint) or _is_response(hint):
                continue
            _check_reproducible(f"{service}.{fn.__name__}", name, param, hint)
            if inspect.isclass(hint) and issubclass(hint, BaseModel):
                if body_param is not None:
                    raise TypeError(
                        f"{service}.{fn.__name__}: a second body parameter {name!r} (after "
                        f"{body_param!r}): FastAPI would nest both under their names, an "
                        f"in-process call would not; put them in one model")
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

    def bind(self, body: Any = None, params: Mapping[str, Any] | None = None
             ) -> dict[str, Any]:
        """The function's keyword arguments for a call, validated as HTTP would validate them.

        `body` is the body model instance, or a mapping of its fields (validated, errors
        named by field); `params` the path and query parameters by name.
        """
        kwargs: dict[str, Any] = {}
        if params:
            self._unknown(params)
            for name, value in params.items():
                where = ("path" if name in self.path_params else "query", name)
                # A str for a str parameter needs no adapter: the hot path of most calls.
                if type(value) is str and name in self.str_params:
                    kwargs[name] = value
                    continue
                try:
                    kwargs[name] = self.param_adapters[name].validate_python(value)
                except PydanticValidationError as exc:
                    raise validation_failed(exc.errors(), where) from None
        if self.body_model is None:
            if body is not None:
                raise TypeError(f"{self.service}.{self.name} takes no body")
            return kwargs
        if isinstance(body, self.body_model):
            kwargs[self.body_param] = body  # type: ignore[index]
            return kwargs
        try:
            kwargs[self.body_param] = self.body_model.model_validate(  # type: ignore[index]
                _fields(body))
        except PydanticValidationError as exc:
            raise validation_failed(exc.errors(), ("body",)) from None
        return kwargs

    def split(self, body: Any = None, params: Mapping[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """(path params, query params, JSON body) of a call, for an HTTP request."""
        params = params or {}
        self._unknown(params)
        path = {k: v for k, v in params.items() if k in self.path_params}
        query = {k: v for k, v in params.items() if k in self.query_params}
        if self.body_model is None:
            if body is not None:
                raise TypeError(f"{self.service}.{self.name} takes no body")
            return path, query, None
        if isinstance(body, BaseModel):
            return path, query, body.model_dump(mode="json")
        return path, query, _fields(body)

    def _unknown(self, params: Mapping[str, Any]) -> None:
        unknown = [k for k in params if k not in self.param_adapters]
        if unknown:  # the caller's code is wrong, not the request
            raise TypeError(f"{self.service}.{self.name} has no parameter "
                            f"{', '.join(map(repr, unknown))} (its parameters: "
                            f"{', '.join(self.params) or 'none'})")


def operation_of(fn: Callable[..., Any]) -> Operation:
    """The operation a function was registered as (`@spec.operation`)."""
    op = getattr(fn, _OPERATION, None)
    if op is None:
        raise TypeError(f"{getattr(fn, '__qualname__', fn)!r} is not a service operation "
                        f"(register it with @spec.operation)")
    return op  # type: ignore[no-any-return]


_OPERATION = "__bem_operation__"
# Markers FastAPI reads from a request, which an in-process call has no way to supply.
_NOT_IN_PROCESS = {fastapi_params.Header: "a header", fastapi_params.Cookie: "a cookie",
                   fastapi_params.Body: "an explicit Body (or Form, File)",
                   fastapi_params.Depends: "a dependency (only Ctx is supplied in-process)"}


def _check_reproducible(where: str, name: str, param: inspect.Parameter, hint: Any) -> None:
    """Refuse a parameter an in-process call cannot supply as HTTP does: the two would
    silently diverge (one definition must serve both the same way)."""
    if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
        raise TypeError(f"{where}: parameter {name!r} must be an ordinary keyword parameter")
    markers = [param.default, *(typing.get_args(hint)[1:]
                                if typing.get_origin(hint) is Annotated else ())]
    for marker in markers:
        for kind, what in _NOT_IN_PROCESS.items():
            if isinstance(marker, kind):
                raise TypeError(f"{where}: parameter {name!r} is {what}, which an "
                                f"in-process call cannot supply; pass it in the body model "
                                f"or as a path or query parameter")
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
    if inspect.isclass(base) and issubclass(base, Request | WebSocket):
        raise TypeError(f"{where}: parameter {name!r} is the raw {base.__name__}, which an "
                        f"in-process call does not have")
    if not (inspect.isclass(base) and issubclass(base, BaseModel)) and _holds_model(base):
        raise TypeError(f"{where}: parameter {name!r} ({base}) holds a model: FastAPI reads "
                        f"it from the body, an in-process call as a parameter; make the body "
                        f"one model")


def _holds_model(hint: Any) -> bool:
    return any((inspect.isclass(a) and issubclass(a, BaseModel)) or _holds_model(a)
               for a in typing.get_args(hint))


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
    """`Ctx`: what the runtime passes to every call, in-process or over HTTP."""
    return typing.get_origin(hint) is Annotated and any(
        isinstance(m, fastapi_params.Depends) and m.dependency is request_context
        for m in typing.get_args(hint)[1:])


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
    return ValidationFailed.naming(details)


@dataclass(frozen=True)
class OldPayload:
    """A payload of the old platform that `POST /process` still accepts (runtime/legacy.py).

    `serve(payload, ctx, key)` answers the old `results`, computed by the service's new
    operations; `key` identifies the envelope (equal for an identical resend), for
    idempotency keys. The pydantic `model` validates the payload and documents it.
    """

    name: str  # the old operation, e.g. "sfde_requests": the metric label and OpenAPI title
    model: type[BaseModel]
    serve: Callable[[Any, Context, str], Awaitable[dict[str, Any]]]


Lifespan = Callable[[Context], AbstractAsyncContextManager[None]]
HealthCheck = Callable[[Context], Mapping[str, dict[str, Any]]]
AppSetup = Callable[[FastAPI, Context], None]


@dataclass
class ServiceSpec:
    """The static definition of one service. See the module docstring."""

    name: str
    title: str
    description: str
    uses_pool: bool = False
    subscribes: bool = False  # consumes the pulse bus: its process listens from start-up
    # Imported once the process is ready (Runtime.warm: its operations wait for them) and
    # by the pool's forkserver.
    compute_modules: tuple[str, ...] = ()
    legacy_operation: str | None = None  # the new body `POST /process` accepts in `data`
    # The old payloads it accepts there too. Set after the operations where serving one
    # calls them: the legacy module is handed them (it cannot import the API module).
    legacy_payloads: tuple[OldPayload, ...] = ()
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
            setattr(fn, _OPERATION, op)  # callers pass the function: ctx.call(fn, ...)
            self.router.add_api_route(
                path, fn, methods=[method], name=op.name, status_code=status_code,
                tags=tags or [self.name], responses={**ERROR_RESPONSES, **(responses or {})},
                response_model_exclude_none=exclude_none)
            return fn
        return register

    def lifespan(self, fn: Callable[[Context], AsyncIterator[None]]) -> Lifespan:
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
