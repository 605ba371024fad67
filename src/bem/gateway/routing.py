"""REST routing on the gateway port: `/{service}/{path}` forwarded to a replica of the service.

A pure ASGI layer (`RoutingMiddleware`) in front of the gateway app's own routing: a request
whose first path segment is a routable service never enters FastAPI (its routing, request
objects and response classes cost more than the forwarding itself). It still passes the
gateway's metrics, body limit, API keys and rate limit, which wrap this layer.

Where the target runs decides the transport:

- in this process (the `single` topology): straight into the service's ASGI app with the
  client's own `receive` and a `send` that only drops hop-by-hop headers, so nothing crosses
  a socket and nothing is copied;
- elsewhere: through the replica loop (`bem.runtime.replicas`: round-robin over the
  registry, failing replicas ejected, retries by its rules). Idempotent requests are GET,
  HEAD, OPTIONS, an operation the target's ServiceSpec marks idempotent (the catalogue of
  specs is handed in by the graphql service: the gateway imports no service), or the legacy
  `POST /process` envelope of such an operation. The request body is bounded by
  MAX_BODY_SIZE and kept, so it can be sent twice; answers up to BUFFER_LIMIT are read whole
  before answering (so a replica dying mid-answer is still retried), bigger ones streamed.

Either way REQUEST_TIMEOUT bounds the wait for the answer: a 504 when nothing was answered yet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from starlette.routing import compile_path

from bem.errors import BemError
from bem.runtime.replicas import Outcome, Request, failure
from bem.runtime.upstream import Answer, Broken

if TYPE_CHECKING:
    from bem.runtime.runtime import ServiceContext
    from bem.runtime.service import ServiceSpec

ROUTE = "/{service}/{path:path}"
METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BUFFER_LIMIT = 1 << 20  # answers up to 1 MB are read whole (retryable); bigger ones stream

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded. `expect`
# too: the gateway has the whole body before it forwards anything.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate",
                        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding",
                        b"upgrade", b"proxy-connection"})
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
GATEWAY_CREDENTIALS = frozenset({b"x-api-key", b"authorization"})
_NOT_RETURNED = HOP_BY_HOP | {b"date"}  # the gateway's server dates its own answer


class RouteLabel:
    """What the metrics middleware reads from `scope["route"]`: the route's template."""

    path = ROUTE


_LABEL = RouteLabel()


IdempotentRoutes = tuple[tuple[str, re.Pattern[str]], ...]


def idempotent_routes(target: ServiceSpec) -> IdempotentRoutes:
    """(method, path pattern) of the operations of `target` that may be sent twice."""
    routes = [(op.method, compile_path(op.path)[0])
              for op in target.operations.values() if op.idempotent]
    legacy = target.operations.get(target.legacy_operation or "")
    if legacy is not None and legacy.idempotent:  # the old envelope of that same operation
        routes.append(("POST", compile_path("/process")[0]))
    return tuple(routes)


def is_idempotent(routes: IdempotentRoutes, method: str, path: str) -> bool:
    """Safe methods, and the operations the target's ServiceSpec marks idempotent."""
    if method in SAFE_METHODS:
        return True
    return any(m == method and rx.match(path) for m, rx in routes)


def routed_service(path: str, routable: frozenset[str]) -> str | None:
    """The service a gateway path routes to: `/{service}/...` with a routable service."""
    service, slash, _ = path[1:].partition("/")
    return service if slash and service in routable else None


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    return {token.strip().lower() for name, value in headers if name == b"connection"
            for token in value.split(b",")}


def request_headers(scope: Scope, strip_credentials: bool) -> RawHeaders:
    """The client's headers minus hop-by-hop ones (and the gateway's own credentials), plus
    X-Forwarded-For/-Proto; host and content-length are the transport's to set."""
    items: RawHeaders = scope["headers"]
    drop = _NOT_FORWARDED
    if any(name == b"connection" for name, _ in items):
        drop = drop | _connection_tokens(items)
    if strip_credentials:
        drop = drop | GATEWAY_CREDENTIALS
    headers = [(k, v) for k, v in items if k not in drop and k != b"x-forwarded-for"]
    client = scope.get("client")
    if client:
        forwarded = next((v for k, v in items if k == b"x-forwarded-for"), None)
        address = client[0].encode("latin-1")
        headers.append((b"x-forwarded-for",
                        forwarded + b", " + address if forwarded else address))
    headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
    return headers


def response_headers(items: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """A replica's (or local app's) answer headers, minus what is the gateway's to say."""
    items = [(k.lower(), v) for k, v in items]
    drop = _NOT_RETURNED
    if any(name == b"connection" for name, _ in items):
        drop = drop | _connection_tokens(items)
    return [(k, v) for k, v in items if k not in drop]


def target_of(scope: Scope, service: str, strip_credentials: bool) -> str:
    """Path and query to send, percent-encoded as the client sent them (re-encoded from the
    decoded path when the client encoded the service name itself)."""
    raw: bytes = scope.get("raw_path") or b""
    prefix = f"/{service}/".encode()
    if raw.startswith(prefix):
        path = raw[len(prefix) - 1:].decode("latin-1")
    else:
        path = "/" + quote(scope["path"][len(prefix):], safe="/:@!$&'()*+,;=")
    query = scope.get("query_string", b"").decode("latin-1")
    if strip_credentials and "api_key" in query:  # the gateway's credential, not the service's
        query = "&".join(p for p in query.split("&") if p.split("=", 1)[0] != "api_key")
    return f"{path}?{query}" if query else path


class Router:
    """Forwards `/{service}/{path}` (ASGI); built by the graphql service's setup, which hands
    in the catalogue (`bem.services.spec`) for the targets' idempotent operations."""

    def __init__(self, ctx: ServiceContext, catalogue: Callable[[str], ServiceSpec]) -> None:
        self.ctx = ctx
        self.runtime = ctx.runtime
        self.timeout = ctx.settings.request_timeout
        self.deadlines = ctx.runtime.client.deadlines
        self.keyed = bool(ctx.settings.api_key_set)
        self.routable = frozenset(ctx.runtime.placement.routable())
        self._catalogue = catalogue
        self._idempotent: dict[str, IdempotentRoutes] = {}

    def idempotent(self, service: str, method: str, path: str) -> bool:
        routes = self._idempotent.get(service)
        if routes is None:  # read once per service, on its first non-safe request
            routes = self._idempotent[service] = idempotent_routes(self._catalogue(service))
        return is_idempotent(routes, method, path)

    async def __call__(self, scope: Scope, receive: Any, send: Any, service: str) -> None:
        target = target_of(scope, service, self.keyed)
        headers = request_headers(scope, self.keyed)
        try:
            if service in self.runtime.contexts:
                await self._local(scope, receive, send, service, target, headers)
            else:
                await self._remote(scope, receive, send, service, target, headers)
        except BemError as exc:  # raised only before anything of an answer was sent
            await send_error(send, exc)

    # --- in this process: the target's ASGI app, no socket ----------------------------------
    async def _local(self, scope: Scope, receive: Any, send: Any, service: str, target: str,
                     headers: RawHeaders) -> None:
        app = self.runtime.contexts[service].app
        path, _, query = target.partition("?")
        length = [(k, v) for k, v in scope["headers"] if k == b"content-length"]
        child = {**scope, "path": scope["path"][len(service) + 1:],
                 "raw_path": path.encode("latin-1"), "query_string": query.encode("latin-1"),
                 "root_path": "", "state": {},
                 "headers": [*headers, (b"host", service.encode()), *length]}
        child.pop("route", None)
        child.pop("router", None)
        started = False

        async def answer(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": response_headers(message.get("headers", ()))}
            await send(message)

        try:
            async with self.deadlines.limit(self.timeout):
                await app(child, receive, answer)
        except TimeoutError:
            if started:
                raise
            raise failure(Outcome.TIMEOUT, service, "in this process",
                          f"{scope['method']} {target}", self.timeout, "") from None

    # --- elsewhere: a replica through the replica loop --------------------------------------
    async def _remote(self, scope: Scope, receive: Any, send: Any, service: str, target: str,
                      headers: RawHeaders) -> None:
        body = await read_body(receive)
        if body is None:
            return  # the client left: nobody to answer
        method = scope["method"]
        request = Request(service=service, method=method.encode(),
                          target=target.encode("latin-1"), headers=headers, body=body,
                          idempotent=self.idempotent(service, method,
                                                     target.split("?", 1)[0]),
                          what=f"{method} {target}")
        answer = await self.runtime.client.replicas.send(request, BUFFER_LIMIT)
        try:
            await send({"type": "http.response.start", "status": answer.status,
                        "headers": response_headers(answer.headers)})
            if answer.body is not None:
                await send({"type": "http.response.body", "body": answer.body})
                return
            await self._stream(answer, send)
        finally:
            answer.release()

    async def _stream(self, answer: Answer, send: Any) -> None:
        chunks = answer.chunks()
        while True:
            try:
                async with self.deadlines.limit(self.timeout):  # between two pieces of it
                    chunk = await anext(chunks, None)
            except (TimeoutError, Broken) as exc:
                raise ConnectionError(f"replica broke off a streamed answer: {exc!r}") from None
            if chunk is None:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


class RoutingMiddleware:
    """Sends `/{routable service}/...` to the Router; everything else to the gateway app."""

    def __init__(self, app: Any, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        service = routed_service(scope["path"], self.router.routable) \
            if scope["type"] == "http" else None
        if service is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _LABEL
        await self.router(scope, receive, send, service)


async def read_body(receive: Any) -> bytes | None:
    """The whole request body (MAX_BODY_SIZE bounds it: the body limit middleware counts);
    None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_error(send: Any, exc: BemError) -> None:
    body = orjson.dumps(exc.to_body())
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
