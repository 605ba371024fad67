"""The service client: `call(operation, body, **params)`, wherever the peer runs.

The operation is the peer's function itself (`from bem.services.sfde.api import evaluate`),
so jump-to-definition, renames and type checks work across the hop; the answer is its
response model. Local peer (same process): the function is called directly; the body and
parameters are validated exactly as the HTTP route would validate them (a model instance
as it is), and no JSON is produced. Remote
peer: one HTTP request over a pooled connection to a replica chosen by the balancer; an
error answer is re-raised as the same BemError class the peer raised. Either way the caller
gets the operation's response model.

Every call gets REQUEST_TIMEOUT, in-process or remote: past it the caller gets the same 504
`UpstreamTimeout` either way (a local operation still running is cancelled). Remote calls go
through the replica loop (`replicas.py`): a request that never reached a replica is retried
on another whatever the operation, one that may have reached it only when the operation is
idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from bem.errors import BemError, ValidationFailed, error_from_body
from bem.runtime.deadlines import Deadlines
from bem.runtime.registry import Balancer, Registry
from bem.runtime.replicas import Outcome, Replicas, Request, failure
from bem.runtime.service import Operation, operation_of
from bem.runtime.upstream import IDLE_SECONDS, Upstream

if TYPE_CHECKING:
    from bem.runtime.metrics import Metrics
    from bem.settings import Settings

_JSON = [(b"content-type", b"application/json"), (b"accept", b"application/json")]
# (operation, local ServiceContext or None, counter key of a success, of a failure). The
# contexts are only passed on to the operations: typed `Any`, so that this module does not
# import bem.runtime.runtime, which imports it.
_Route = tuple[Operation, Any, tuple[str, ...], tuple[str, ...]]
R = TypeVar("R")


class ServiceClient:
    def __init__(self, settings: Settings, metrics: Metrics, registry: Registry,
                 local: Mapping[str, Any]) -> None:
        """`local`: the services of this process (called in-process), by name."""
        self.metrics = metrics
        self.local = local
        self.timeout = settings.request_timeout
        self.balancer = Balancer(registry)
        self.deadlines = Deadlines()
        self.replicas = Replicas(self.balancer, Upstream(settings.connection_pool_size),
                                 self.timeout, self.deadlines)
        self._calls = metrics.calls
        self._routes: dict[tuple[str, Callable[..., Any]], _Route] = {}
        self._latency: dict[tuple[str, str], Any] = {}  # (caller, target) -> its histogram
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """A general HTTP session, for the dashboard's fetches of other processes' reports
        (calls to services go through `replicas`)."""
        if self._http is None:  # built inside the running loop, on first use
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=IDLE_SECONDS),
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=2.0),
                auto_decompress=False, raise_for_status=False)
        return self._http

    async def close(self) -> None:
        await self.replicas.upstream.close()
        if self._http is not None:
            await self._http.close()

    def _count(self, caller: str, op: Operation, transport: str, outcome: str) -> None:
        key = (caller, op.service, op.name, transport, outcome)
        self._calls[key] = self._calls.get(key, 0) + 1

    async def call(self, operation: Callable[..., Awaitable[R]], body: Any = None, /, *,
                   caller: str = "client", **params: Any) -> R:
        """`operation` (a function registered with `@spec.operation`) wherever its service
        runs; `body` its request model (or a mapping of its fields), `params` its path and
        query parameters by name. Returns its response model."""
        route = self._routes.get((caller, operation)) or self._route(caller, operation)
        op, ctx, ok, error = route
        if ctx is None:
            return await self._remote(op, body, params, caller)  # type: ignore[no-any-return]
        try:
            async with self.deadlines.limit(self.timeout) as limit:
                if not ctx.warmed.is_set():
                    await ctx.warmed.wait()
                result = await op.fn(**op.bind(body, params), ctx=ctx)
        except BemError:
            self._calls[error] += 1
            raise
        except TimeoutError:
            if not limit.expired:
                raise  # the operation's own, not this call's time limit
            self._calls[error] += 1
            raise failure(Outcome.TIMEOUT, op.service, "in this process", op.name,
                          self.timeout, "") from None
        self._calls[ok] += 1
        return result  # type: ignore[no-any-return]

    def _route(self, caller: str, operation: Callable[..., Any]) -> _Route:
        """Resolve once per (caller, operation): where the peer runs never changes for the
        life of the process, and the hot path then costs one dict lookup."""
        op = operation_of(operation)
        route = (op, self.local.get(op.service),
                 (caller, op.service, op.name, "inprocess", "ok"),
                 (caller, op.service, op.name, "inprocess", "error"))
        if route[1] is not None:
            for key in route[2:]:  # plain dict `+= 1` on the hot path needs the keys present
                self._calls.setdefault(key, 0)
        self._routes[caller, operation] = route
        return route

    async def _remote(self, op: Operation, body: Any, params: dict[str, Any], caller: str
                      ) -> Any:
        path_params, query, body = op.split(body, params)
        path = op.path.format(**{k: quote(str(v), safe="") for k, v in path_params.items()})
        if query := _query(query):
            path += "?" + urlencode(query)
        try:
            content = b"" if body is None else orjson.dumps(body)
        except orjson.JSONEncodeError as exc:  # e.g. nested deeper than orjson encodes
            raise ValidationFailed(f"body: cannot be sent as JSON ({exc})",
                                   field="body") from None
        m = self.metrics
        start = time.perf_counter()
        request = Request(service=op.service, method=op.method.encode(),
                          target=path.encode(), headers=_JSON, body=content,
                          idempotent=op.idempotent, what=op.name)
        try:
            answer = await self.replicas.send(request)
        except BemError:
            self._count(caller, op, "http", "error")
            raise
        finally:
            latency = self._latency.get((caller, op.service))
            if latency is None:  # `labels()` takes a lock and builds its key: once per pair
                latency = self._latency[caller, op.service] = m.call_latency.labels(
                    caller, m.cluster, op.service, "http")
            latency.observe(time.perf_counter() - start)
        answer.release()  # read whole: the connection can serve the next call
        data = answer.body or b""
        if answer.status >= 400:
            self._count(caller, op, "http", "error")
            try:
                detail = orjson.loads(data)
            except orjson.JSONDecodeError:
                detail = data.decode(errors="replace")
            err = error_from_body(answer.status, detail)
            retry_after = answer.header(b"retry-after")
            if retry_after is not None:
                err.headers["Retry-After"] = retry_after.decode("latin-1")
            raise err
        self._count(caller, op, "http", "ok")
        return op.response.validate_json(data)


def _query(query: dict[str, Any]) -> dict[str, str] | None:
    """Query values as text (booleans as `true` / `false`, as FastAPI reads them)."""
    if not query:
        return None
    return {k: ("true" if v is True else "false" if v is False else str(v))
            for k, v in query.items() if v is not None}
