"""Access control of the gateway ports: optional API keys and per-client rate limiting.

API keys (BEM_API_KEYS, comma-separated): when set, every request to a gateway port needs a
valid key (header `X-API-Key`, `Authorization: Bearer <key>`, or `?api_key=` for browser
WebSockets, which cannot set headers), health endpoints excepted. Keys are compared in
constant time against every configured key. A request without a valid key still spends a
token of its address's bucket, so guessing keys is rate-limited.

Rate limiting: a token bucket per client (by API key, else by address) refilled at
RATE_LIMIT_RPS up to RATE_LIMIT_BURST. Over the limit: 429 with `Retry-After` and the
IETF draft `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers),
which every limited answer also carries.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson

from bem.settings import Settings

EXEMPT_PREFIXES = ("/health", "/cluster-health")
MAX_CLIENTS = 100_000  # buckets kept; the least recently seen client is forgotten first


class TokenBuckets:
    """Token buckets keyed by client, bounded in number."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        window = max(1, math.ceil(burst / rate))
        self._policy = (b"ratelimit-policy", f'"burst";q={burst};w={window}'.encode())

    def take(self, client: str, now: float | None = None) -> tuple[bool, int, float]:
        """Take one token: (allowed, tokens left, seconds until a token is available)."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
        return allowed, int(tokens), wait

    def headers(self, remaining: int, wait: float) -> list[tuple[bytes, bytes]]:
        reset = max(0, math.ceil(wait))
        return [self._policy, (b"ratelimit", b'"burst";r=%d;t=%d' % (remaining, reset))]


def _key_from(scope: MutableMapping[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key":
            return value.decode("latin-1")
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].decode("latin-1").strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    keys = query.get("api_key")
    return keys[0] if keys else None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_is_valid(candidate: str | None, keys: frozenset[str]) -> bool:
    """Constant time in the candidate's content and length: fixed-size digests are compared,
    against every configured key."""
    if candidate is None:
        return False
    given = _digest(candidate)
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, _digest(key))
    return matched


def is_exempt(path: str) -> bool:
    """Health endpoints (`/health`, `/health/...`, `/cluster-health...`), nothing else."""
    if not path.startswith(EXEMPT_PREFIXES):  # every other request: one C-level check
        return False
    return any(path == p or path.startswith(p + "/") for p in EXEMPT_PREFIXES)


class AccessMiddleware:
    """ASGI middleware applying API keys and rate limits to HTTP and WebSocket scopes."""

    def __init__(self, app: Any, settings: Settings, buckets: TokenBuckets) -> None:
        self.app = app
        self.keys = settings.api_key_set
        self.buckets = buckets

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or is_exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        key = _key_from(scope) if self.keys else None
        client = scope.get("client")
        address = "addr:" + (client[0] if client else "?")
        if self.keys and not key_is_valid(key, self.keys):
            # Charged to the address: guessing keys is rate-limited like any other request.
            limit_headers = await self._limit(scope, send, address)
            if limit_headers is not None:
                message = "missing API key" if key is None else "invalid API key"
                await _deny(scope, send, 401, "unauthorized",
                            f"{message}: send X-API-Key or Authorization: Bearer",
                            [(b"www-authenticate", b'Bearer realm="bem"'), *limit_headers])
            return
        limit_headers = await self._limit(scope, send, f"key:{key}" if self.keys else address)
        if limit_headers is None:
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *limit_headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _limit(self, scope: MutableMapping[str, Any], send: Any, client: str
                     ) -> list[tuple[bytes, bytes]] | None:
        """Take a token: the limit headers to add, or None once a 429 has been sent."""
        allowed, remaining, wait = self.buckets.take(client)
        limit_headers = self.buckets.headers(remaining, wait)
        if allowed:
            return limit_headers
        retry = str(max(1, math.ceil(wait))).encode()
        await _deny(scope, send, 429, "rate_limited",
                    f"rate limit of {self.buckets.rate:g} requests/s (burst "
                    f"{self.buckets.burst}) exceeded; retry in {retry.decode()} s",
                    [(b"retry-after", retry), *limit_headers])
        return None


async def _deny(scope: MutableMapping[str, Any], send: Any, status: int, code: str,
                message: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = orjson.dumps({"error": code, "message": message})
    start = {"status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()), *headers]}
    if scope["type"] == "http":
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", **start})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # the server cannot send an HTTP answer to a handshake: refuse it (403)
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})


def install_access(app: Any, settings: Settings, buckets: TokenBuckets) -> None:
    """Add the middleware to a gateway app (`buckets`: the process's, `Gateway.buckets`)."""
    app.add_middleware(AccessMiddleware, settings=settings, buckets=buckets)
