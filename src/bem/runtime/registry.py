"""Where the replicas of each service are, and which one to use next.

With Redis, each service has one sorted set, `bem:registry:<service>`: a member per live
replica (its entry, JSON), scored with the time its registration expires. Every process
adds its services' entries and refreshes their scores (heartbeat, every REGISTRY_TTL / 3); a
replica that dies stops refreshing and is no longer listed once its score is past. Times are
Redis's own clock (TIME, in the scripts), so processes on hosts with different clocks agree.
A lookup reads one key per service: it never walks the keyspace (SCAN over every cache and
graph key was the previous design; `benchmarks/registry.py` measures both).

Without Redis (or before anything registered), peers are at static addresses:
BACKEND_<CLUSTER>_URL (scheme and host) plus the service's port, defaulting to BACKEND_HOST.

A static address whose host is a name is used only if the name resolves within
STATIC_RESOLVE_TIMEOUT: with no replica left, Docker's DNS forwards a service name it no
longer knows to the host's resolvers, and a request would wait on them (10 s seen) instead
of getting its 503 at once.

The balancer does round-robin over the replicas that are not ejected; a replica that fails
at the transport level is ejected for a while (passive health checking) and tried again
afterwards.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import orjson

from bem import redis_keys
from bem.errors import ServiceUnavailable
from bem.runtime.placement import Placement
from bem.runtime.redis_link import RedisLink
from bem.settings import Settings

log = logging.getLogger("bem.registry")

KEY_PREFIX = redis_keys.REGISTRY
LOOKUP_TTL = 1.0  # seconds a registry lookup is reused
EJECT_SECONDS = 5.0
STATIC_RESOLVE_TIMEOUT = 1.0  # seconds a request waits for a static address's name
RESOLVE_TTL = 5.0  # seconds an answer about a name is kept


def static_url(settings: Settings, service: str, cluster: str) -> str:
    """The address of `service` (of `cluster`) when no replica is registered."""
    base = getattr(settings, f"backend_{cluster}_url", None)
    port = settings.port_of(service)
    if base:
        parts = urlsplit(base)
        return f"{parts.scheme or 'http'}://{parts.hostname}:{port}"
    host = settings.backend_host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
# KEYS: the services' sets; ARGV: ttl ms, then one member per key. Adds or refreshes each
# entry, drops the expired ones, and lets a set nobody refreshes any more expire whole.
_HEARTBEAT = _NOW_MS + """
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ARGV[1], ARGV[i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('PEXPIRE', key, 2 * ARGV[1])
end
return now"""
# KEYS: the services' sets. The live entries of each.
_LIVE = _NOW_MS + """
local found = {}
for i, key in ipairs(KEYS) do
  found[i] = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')
end
return found"""


def registry_key(service: str) -> str:
    return KEY_PREFIX + service


class Registry:
    def __init__(self, settings: Settings, redis: RedisLink, *, instance_id: str,
                 cluster: str, placement: Placement) -> None:
        self.settings = settings
        self.placement = placement
        self.redis = redis
        self.instance_id = instance_id
        self.cluster = cluster
        self.ttl = settings.registry_ttl
        self._entries: dict[str, bytes] = {}  # registry key -> this process's member
        self._heartbeat: asyncio.Task[None] | None = None
        self._lookups: dict[str, tuple[float, list[str]]] = {}
        # host -> (until, None if it resolves else why not); one lookup of a host at a time
        self._names: dict[str, tuple[float, str | None]] = {}
        # service -> (static URL, its host if a name to resolve, None if an address)
        self._statics: dict[str, tuple[str, str | None]] = {}
        self._resolving: dict[str, asyncio.Task[str | None]] = {}

    async def register(self, addresses: dict[str, str], pid: int) -> None:
        started = time.time()
        self._entries = {
            registry_key(service): orjson.dumps({
                "service": service, "url": url, "cluster": self.cluster,
                "instance": self.instance_id, "pid": pid, "started_at": started})
            for service, url in addresses.items()
        }
        await self._publish()
        if self.redis.configured:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def deregister(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self._entries:
            entries = dict(self._entries)

            async def remove(r: Any) -> None:
                async with r.pipeline(transaction=False) as pipe:
                    for key, member in entries.items():
                        pipe.zrem(key, member)
                    await pipe.execute()

            await self.redis.optional(remove, None)
        self._entries = {}

    async def _publish(self) -> None:
        if not self._entries:
            return
        keys, members = list(self._entries), list(self._entries.values())
        ttl_ms = int(self.ttl * 1000)
        await self.redis.optional(
            lambda r: r.eval(_HEARTBEAT, len(keys), *keys, ttl_ms, *members), None)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            await self._publish()

    async def entries(self, services: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every live registered replica of these services (default: all; the dashboard)."""
        keys = [registry_key(s) for s in (self.placement.services if services is None
                                          else services)]

        async def live(r: Any) -> list[dict[str, Any]]:
            found = await r.eval(_LIVE, len(keys), *keys)
            return [orjson.loads(member) for members in found for member in members]

        return await self.redis.optional(live, [])

    async def urls(self, service: str) -> list[str]:
        """URLs of the live replicas of a service (static address when none registered).

        Raises ServiceUnavailable when there is none: nothing registered and the static
        address's name does not resolve.
        """
        if not self.redis.configured:
            return [await self._static(service)]
        now = time.monotonic()
        cached = self._lookups.get(service)
        if cached and now - cached[0] < LOOKUP_TTL:
            return cached[1]
        found = sorted({e["url"] for e in await self.entries([service])})
        if not found and not self.redis.up and cached:
            found = cached[1]  # Redis is down: keep using the last known replicas
        urls = found or [await self._static(service)]
        self._lookups[service] = (now, urls)
        return urls

    async def _static(self, service: str) -> str:
        static = self._statics.get(service)
        if static is None:  # the settings never change: parsed once, not on every call
            url = static_url(self.settings, service, self.placement.cluster_of[service])
            host = urlsplit(url).hostname or ""
            static = self._statics[service] = (url, None if _is_address(host) else host)
        url, name = static
        why = None if name is None else await self._unresolved(name)
        if why is not None:
            raise ServiceUnavailable(
                f"no replica of {service} is registered and its static address {url} does "
                f"not resolve ({why})", headers={"Retry-After": "1"})
        return url

    async def _unresolved(self, host: str) -> str | None:
        """None if `host` resolves, else why not; waits STATIC_RESOLVE_TIMEOUT at most (a
        slow lookup goes on in the background and its answer replaces this one)."""
        known = self._names.get(host)
        if known and known[0] > time.monotonic():
            return known[1]
        task = self._resolving.get(host)
        if task is None:
            task = self._resolving[host] = asyncio.get_running_loop().create_task(
                self._resolve(host))
        try:
            return await asyncio.wait_for(asyncio.shield(task), STATIC_RESOLVE_TIMEOUT)
        except TimeoutError:
            why = f"no DNS answer within {STATIC_RESOLVE_TIMEOUT:g} s"
            self._names[host] = (time.monotonic() + RESOLVE_TTL, why)
            return why

    async def _resolve(self, host: str) -> str | None:
        why: str | None = None
        try:
            await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:  # socket.gaierror: no such name, no DNS server
            why = str(exc)
        finally:
            self._resolving.pop(host, None)
        self._names[host] = (time.monotonic() + RESOLVE_TTL, why)
        return why


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Balancer:
    """Round-robin over non-ejected replicas, with passive ejection of failing ones."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._turn: dict[str, itertools.count[int]] = {}
        self._ejected: dict[str, float] = {}

    async def pick(self, service: str, exclude: Iterable[str] = ()) -> str:
        urls = await self.registry.urls(service)
        skip = set(exclude)
        now = time.monotonic()
        fresh = [u for u in urls if u not in skip]
        healthy = [u for u in fresh if self._ejected.get(u, 0.0) <= now]
        # Every replica ejected: try one anyway rather than fail without trying.
        candidates = healthy or fresh or urls
        turn = self._turn.setdefault(service, itertools.count())
        return candidates[next(turn) % len(candidates)]

    def eject(self, url: str, reason: str) -> None:
        if self._ejected.get(url, 0.0) <= time.monotonic():
            log.warning("ejecting replica %s for %.0fs: %s", url, EJECT_SECONDS, reason)
        self._ejected[url] = time.monotonic() + EJECT_SECONDS

    def ejected(self) -> list[str]:
        now = time.monotonic()
        return [u for u, until in self._ejected.items() if until > now]
