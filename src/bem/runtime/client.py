"""The service client: `call(service, operation, payload)`, wherever the peer runs.

Local peer (same process): the operation's Python function is called directly; the payload
is validated exactly as the HTTP route would validate it, and no JSON is produced. Remote
peer: one HTTP request over a pooled connection to a replica chosen by the balancer; an
error answer is re-raised as the same BemError class the peer raised. Either way the caller
gets the operation's response model.

Retries: a request that never reached a replica (connection refused) is retried on another
replica whatever the operation; one that may have reached it is retried only when the
operation is idempotent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson

from bem.errors import BemError, ServiceUnavailable, UpstreamTimeout, error_from_body
from bem.runtime.registry import Balancer, Registry
from bem.runtime.service import Operation
from bem.services import spec as service_spec

if TYPE_CHECKING:
    from bem.runtime.runtime import Runtime

_JSON = {"content-type": "application/json", "accept": "application/json"}
_RETRY_STATUSES = frozenset({502, 503, 504})


class ServiceClient:
    def __init__(self, runtime: Runtime, registry: Registry) -> None:
        self.runtime = runtime
        settings = runtime.settings
        size = settings.connection_pool_size
        self.http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            timeout=httpx.Timeout(settings.request_timeout, connect=2.0),
        )
        self.balancer = Balancer(registry)
        self._calls = runtime.metrics.calls

    async def close(self) -> None:
        await self.http.aclose()

    def _count(self, caller: str, op: Operation, transport: str, outcome: str) -> None:
        self._calls[caller, op.service, op.name, transport, outcome] += 1

    async def call(self, service: str, operation: str, payload: Any = None, *,
                   caller: str = "client") -> Any:
        op = service_spec(service).get(operation)
        ctx = self.runtime.contexts.get(service)
        if ctx is None:
            return await self._remote(op, payload, caller)
        try:
            result = await op.fn(**op.bind(payload), ctx=ctx)
        except BemError:
            self._count(caller, op, "inprocess", "error")
            raise
        self._count(caller, op, "inprocess", "ok")
        return result

    async def _remote(self, op: Operation, payload: Any, caller: str) -> Any:
        path_params, query, body = op.split(payload)
        path = op.path.format(**{k: quote(str(v), safe="") for k, v in path_params.items()})
        content = None if body is None else orjson.dumps(body)
        m = self.runtime.metrics
        start = time.perf_counter()
        try:
            response = await self._send(op, path, query, content)
        except BemError:
            self._count(caller, op, "http", "error")
            raise
        finally:
            m.call_latency.labels(caller, m.cluster, op.service, "http").observe(
                time.perf_counter() - start)
        if response.status_code >= 400:
            self._count(caller, op, "http", "error")
            try:
                detail = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                detail = response.text
            err = error_from_body(response.status_code, detail)
            if "retry-after" in response.headers:
                err.headers["Retry-After"] = response.headers["retry-after"]
            raise err
        self._count(caller, op, "http", "ok")
        return op.response.validate_json(response.content)

    async def _send(self, op: Operation, path: str, query: dict[str, Any],
                    content: bytes | None) -> httpx.Response:
        tried: list[str] = []
        outcome: httpx.Response | BemError | None = None
        for _attempt in range(2):
            base = await self.balancer.pick(op.service, exclude=tried)
            if base in tried:
                break  # no other replica to try
            tried.append(base)
            try:
                response = await self.http.request(op.method, base + path, params=query or None,
                                                   content=content, headers=_JSON)
            except httpx.ConnectError as exc:
                self.balancer.eject(base, str(exc))
                outcome = ServiceUnavailable(f"{op.service} unreachable at {base}: {exc}",
                                             headers={"Retry-After": "1"})
                continue  # never reached the peer: safe to retry any operation
            except httpx.TimeoutException:
                self.balancer.eject(base, "timeout")
                outcome = UpstreamTimeout(f"{op.service} at {base} did not answer {op.name} "
                                          f"within {self.runtime.settings.request_timeout:g} s")
            except httpx.TransportError as exc:
                self.balancer.eject(base, repr(exc))
                outcome = ServiceUnavailable(f"{op.service} at {base} failed: {exc!r}",
                                             headers={"Retry-After": "1"})
            else:
                if response.status_code not in _RETRY_STATUSES:
                    return response
                outcome = response
            if not op.idempotent:
                break
        if isinstance(outcome, httpx.Response):
            return outcome
        raise outcome or ServiceUnavailable(f"no replica of {op.service} is known")
