"""REST routing on the gateway port: `/{service}/{path}` forwarded to a replica of the service.

Where the target runs decides the transport:

- in this process (the `single` topology): straight into the service's ASGI app, so nothing
  crosses a socket;
- elsewhere: over the runtime's pooled HTTP client to a replica the balancer picks
  (round-robin over the Redis registry, or the static BACKEND_*_URL address). A replica that
  fails at the transport level is ejected for a while (passive health checking).

Retries follow the service client's rule: a request that never reached a replica (connection
refused, connect time-out) is retried on another replica whatever it is; one that may have
reached it (read time-out, reset, 502/503/504) only when it is idempotent: GET, HEAD,
OPTIONS, an operation the target's ServiceSpec marks idempotent, or the legacy
`POST /process` envelope of such an operation. The request body is
bounded by MAX_BODY_SIZE and kept, so it can be sent twice; small answers are read whole
before answering (so a replica dying mid-answer is still retried), big ones are streamed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import aiohttp
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.routing import compile_path

from bem.clusters import ALL_SERVICES, GATEWAY_SERVICES
from bem.errors import BemError, NotFound, ServiceUnavailable, UpstreamTimeout
from bem.runtime.app import error_response
from bem.runtime.client import NOT_SENT
from bem.services import spec

if TYPE_CHECKING:
    from bem.runtime.service import ServiceContext

ROUTABLE: tuple[str, ...] = tuple(s for s in ALL_SERVICES if s not in GATEWAY_SERVICES)
METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_STATUSES = frozenset({502, 503, 504})
BUFFER_LIMIT = 1 << 20  # answers up to 1 MB are read whole (retryable); bigger ones stream

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding",
                        "upgrade", "proxy-connection"})
GATEWAY_CREDENTIALS = frozenset({"x-api-key", "authorization"})


@cache
def _idempotent_routes(service: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    target = spec(service)
    routes = [(op.method, compile_path(op.path)[0])
              for op in target.operations.values() if op.idempotent]
    legacy = target.operations.get(target.legacy_operation or "")
    if legacy is not None and legacy.idempotent:  # the old envelope of that same operation
        routes.append(("POST", compile_path("/process")[0]))
    return tuple(routes)


def is_idempotent(service: str, method: str, path: str) -> bool:
    """Safe methods, and the operations the target's ServiceSpec marks idempotent."""
    if method in SAFE_METHODS:
        return True
    return any(m == method and rx.match(path) for m, rx in _idempotent_routes(service))


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    return {token.strip().lower() for name, value in headers if name == "connection"
            for token in value.split(",")}


def request_headers(request: Request, strip_credentials: bool) -> list[tuple[str, str]]:
    """The client's headers minus hop-by-hop ones (and the gateway's own credentials)."""
    items = request.headers.items()
    drop = HOP_BY_HOP | _connection_tokens(items) | {"host", "content-length"}
    if strip_credentials:
        drop |= GATEWAY_CREDENTIALS
    headers = [(k, v) for k, v in items if k not in drop]
    client = request.client.host if request.client else None
    if client:
        forwarded = request.headers.get("x-forwarded-for")
        headers = [(k, v) for k, v in headers if k != "x-forwarded-for"]
        headers.append(("x-forwarded-for", f"{forwarded}, {client}" if forwarded else client))
    headers.append(("x-forwarded-proto", request.url.scheme))
    return headers


def response_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    items = [(k.lower(), v) for k, v in items]
    drop = HOP_BY_HOP | _connection_tokens(items)
    return {k: v for k, v in items if k not in drop}


def target_of(request: Request, service: str, rest: str, strip_credentials: bool) -> str:
    """Path and query to send, percent-encoded as the client sent them (`rest` is the path
    after the service, decoded: used when the client encoded the service name itself)."""
    raw = request.scope.get("raw_path") or b""
    prefix = f"/{service}/".encode()
    if raw.startswith(prefix):
        path = raw[len(prefix) - 1:].decode("latin-1")
    else:
        path = "/" + quote(rest, safe="/:@!$&'()*+,;=")
    query = request.scope.get("query_string", b"").decode("latin-1")
    if strip_credentials and "api_key" in query:  # the gateway's credential, not the service's
        query = "&".join(p for p in query.split("&") if p.split("=", 1)[0] != "api_key")
    return f"{path}?{query}" if query else path


@dataclass
class Outbound:
    """One request to forward; `body` is kept so that it can be sent to a second replica."""

    service: str
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    idempotent: bool


class Router:
    """Forwards `/{service}/{path}`; built by the graphql service's lifespan."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.runtime = ctx.runtime
        self.timeout = ctx.settings.request_timeout

    async def handle(self, request: Request, service: str, rest: str) -> Response:
        if service not in ROUTABLE:
            return error_response(NotFound(
                f"no service {service!r} behind the gateway; routable services: "
                f"{', '.join(ROUTABLE)}", field="service"))
        keyed = bool(self.ctx.settings.api_key_set)
        target = target_of(request, service, rest, keyed)
        out = Outbound(service=service, method=request.method, target=target,
                       headers=request_headers(request, keyed),
                       body=await request.body(),
                       idempotent=is_idempotent(service, request.method,
                                                target.split("?", 1)[0]))
        try:
            if service in self.runtime.contexts:
                return await self._local_forward(out, request)
            return await self._remote_forward(out)
        except BemError as exc:
            return error_response(exc)

    # --- in this process: the target's ASGI app, no socket ----------------------------------
    async def _local_forward(self, out: Outbound, request: Request) -> Response:
        app = self.runtime.contexts[out.service].app
        try:
            async with asyncio.timeout(self.timeout):
                status, headers, body = await asgi_request(app, out, request.scope)
        except TimeoutError:
            raise UpstreamTimeout(f"{out.service} did not answer {out.method} {out.target} "
                                  f"within {self.timeout:g} s") from None
        return Response(body, status_code=status, headers=response_headers(headers))

    # --- elsewhere: a replica over pooled HTTP ----------------------------------------------
    async def _remote_forward(self, out: Outbound) -> Response:
        balancer = self.runtime.client.balancer
        tried: list[str] = []
        last: _Answer | None = None
        failure: BemError | None = None
        for _attempt in range(2):
            base = await balancer.pick(out.service, exclude=tried)
            if base in tried:
                break  # no other replica to try
            if last is not None:
                last.response.release()
                last = None
            tried.append(base)
            try:
                answer = await self._send(base, out)
            except _NotSent as exc:
                failure = exc.error
                continue  # never reached the replica: any request may be retried
            except BemError as exc:
                failure = exc
            else:
                if answer.response.status not in RETRY_STATUSES:
                    return answer.to_response()
                last, failure = answer, None
            if not out.idempotent:
                break
        if last is not None:
            return last.to_response()
        raise failure or ServiceUnavailable(f"no replica of {out.service} is known")

    async def _send(self, base: str, out: Outbound) -> _Answer:
        """One attempt on one replica: the answer, its body read whole when small."""
        balancer = self.runtime.client.balancer
        try:
            response = await self.runtime.client.http.request(
                out.method, base + out.target, headers=out.headers, data=out.body or None,
                allow_redirects=False, skip_auto_headers=("Accept-Encoding", "User-Agent"))
        except NOT_SENT as exc:
            balancer.eject(base, repr(exc))
            raise _NotSent(ServiceUnavailable(
                f"{out.service} is unavailable: replica {base} refused the connection "
                f"({exc!r})", headers={"Retry-After": "1"})) from None
        except TimeoutError:
            balancer.eject(base, "timeout")
            raise UpstreamTimeout(f"{out.service} at {base} did not answer {out.method} "
                                  f"{out.target} within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            balancer.eject(base, repr(exc))
            raise ServiceUnavailable(f"{out.service} at {base} failed: {exc!r}",
                                     headers={"Retry-After": "1"}) from None
        if response.content_length is None or response.content_length > BUFFER_LIMIT:
            return _Answer(response, None)
        try:
            return _Answer(response, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            response.release()
            balancer.eject(base, repr(exc))
            raise ServiceUnavailable(f"{out.service} at {base} broke off its answer: {exc!r}",
                                     headers={"Retry-After": "1"}) from None


async def asgi_request(app: Any, out: Outbound, origin: Mapping[str, Any]
                       ) -> tuple[int, list[tuple[str, str]], bytes]:
    """One HTTP request straight into an ASGI app of this process (no socket, no client)."""
    path, _, query = out.target.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": out.method, "scheme": "http",
             "path": unquote(path), "raw_path": path.encode("latin-1"),
             "query_string": query.encode("latin-1"), "root_path": "",
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                         for k, v in out.headers]
                        + [(b"host", out.service.encode()),
                           (b"content-length", str(len(out.body)).encode())],
             "client": origin.get("client"), "server": origin.get("server"),
             "state": {}}
    sent = False
    status = 500
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": out.body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects: wait to be cancelled
        raise AssertionError("unreachable")

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.extend((k.decode("latin-1"), v.decode("latin-1"))
                           for k, v in message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, headers, b"".join(chunks)


class _NotSent(Exception):
    """The request never reached the replica (so retrying it elsewhere is always safe)."""

    def __init__(self, error: BemError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class _Answer:
    response: aiohttp.ClientResponse
    body: bytes | None  # None: not read yet, to be streamed to the client

    def to_response(self) -> Response:
        r = self.response
        headers = response_headers(r.headers.items())
        if self.body is not None:
            r.release()
            return Response(self.body, status_code=r.status, headers=headers)
        return StreamingResponse(r.content.iter_any(), status_code=r.status, headers=headers,
                                 background=BackgroundTask(r.release))
