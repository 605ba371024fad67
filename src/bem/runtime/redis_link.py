"""The process's Redis connection, built to degrade instead of break.

When Redis stops answering, the link is marked down: optional operations (cache reads and
writes, registry heartbeats) are skipped at once instead of waiting on timeouts, and a
background task probes Redis until it answers again. Operations that must not silently
degrade (appending to the durable event log) call `required()` and get ServiceUnavailable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bem.errors import ServiceUnavailable

log = logging.getLogger("bem.redis")

T = TypeVar("T")
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError,
                 asyncio.TimeoutError)
# What a probe (PING) may meet besides an outage: a Redis that answers but refuses this
# client (NOAUTH or WRONGPASS: REDIS_URL's password; DENIED: protected mode; LOADING: still
# reading its data). The process serves degraded and says why, as for an outage, and the
# probe goes on: an operator who fixes Redis needs no restart of the clusters.
PROBE_ERRORS = (*OUTAGE_ERRORS, ResponseError)
PROBE_INTERVAL = 0.5


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that redis-py lost. Cancelled mid-command, redis-py often
    finishes the command and returns normally (measured: most of 3 000 cancels of a `SET`
    loop, redis-py 8.1), and then a loop that awaits Redis never ends (a shutdown hung on
    the registry heartbeat that way). Every Redis call of the runtime checks after it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisLink:
    """Wraps one `redis.asyncio.Redis` (its own connection pool) with up/down tracking."""

    def __init__(self, url: str | None, *, on_change: Callable[[bool], None] | None = None,
                 max_connections: int = 64) -> None:
        self.url = url
        self.client: aioredis.Redis | None = None
        if url:
            self.client = aioredis.Redis.from_url(
                url, socket_timeout=2.0, socket_connect_timeout=1.0,
                max_connections=max_connections, decode_responses=False,
            )
        self.up = False
        self.down_since: float | None = None
        self._on_change = on_change
        self._probe: asyncio.Task[None] | None = None
        self.last_error = ""

    def subscriber(self) -> aioredis.Redis:
        """A separate client for pub/sub: no read timeout (a quiet channel is not an outage);
        periodic health checks notice a dead connection instead."""
        assert self.url is not None
        return aioredis.Redis.from_url(self.url, socket_connect_timeout=1.0,
                                       health_check_interval=5, decode_responses=False)

    @property
    def configured(self) -> bool:
        return self.client is not None

    async def start(self) -> None:
        """Connect once; an unreachable Redis at start-up is a degraded start, not a failure."""
        if self.client is None:
            return
        try:
            await self.client.ping()
        except PROBE_ERRORS as exc:
            self._mark_down(exc)
        else:
            self._mark_up()

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()

    async def optional(self, op: Callable[[aioredis.Redis], Awaitable[T]],
                       default: T) -> T:
        """Run `op`, or return `default` when Redis is absent or down."""
        if self.client is None or not self.up:
            return default
        try:
            result = await op(self.client)
        except OUTAGE_ERRORS as exc:
            raise_if_cancelled()
            self._mark_down(exc)
            return default
        raise_if_cancelled()
        return result

    async def required(self, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run `op` or raise ServiceUnavailable (with Retry-After) when Redis cannot answer."""
        if self.client is None:
            raise ServiceUnavailable("Redis is not configured (REDIS_URL is unset)")
        if not self.up:
            raise self._unavailable()
        try:
            result = await op(self.client)
        except OUTAGE_ERRORS as exc:
            raise_if_cancelled()
            self._mark_down(exc)
            raise self._unavailable() from exc
        raise_if_cancelled()
        return result

    def _unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable(f"Redis is unavailable ({self.last_error}); retry shortly",
                                  headers={"Retry-After": "2"})

    def health(self) -> dict[str, Any]:
        if self.client is None:
            return {"status": "pass", "observedValue": "not configured (embedded mode)"}
        if self.up:
            return {"status": "pass", "observedValue": "connected"}
        down_for = time.monotonic() - (self.down_since or time.monotonic())
        return {"status": "warn", "observedValue": "unreachable",
                "output": f"down for {down_for:.1f}s: {self.last_error}; reconnecting"}

    def _mark_up(self) -> None:
        if not self.up:
            if self.down_since is not None:
                log.warning("Redis is back after %.1fs", time.monotonic() - self.down_since)
            self.up = True
            self.down_since = None
            if self._on_change:
                self._on_change(True)

    def _mark_down(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        if self.up or self.down_since is None:
            log.warning("Redis unavailable (%s); serving without it and reconnecting",
                        self.last_error)
            self.up = False
            self.down_since = time.monotonic()
            if self._on_change:
                self._on_change(False)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        assert self.client is not None
        while not self.up:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await self.client.ping()
                raise_if_cancelled()
            except PROBE_ERRORS as exc:
                raise_if_cancelled()
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            else:
                # Pooled connections opened before the outage are dead after a Redis
                # restart: drop them, or each fails once and marks the link down again.
                await self.client.connection_pool.disconnect()
                self._mark_up()
