"""Two-level result cache: an in-process LRU bounded in bytes, in front of Redis.

Keys are content hashes of (operation, canonical input), so every cluster and replica that
shares a Redis shares results. Values are stored as orjson bytes at both levels: the byte
bound is exact and an L1 hit costs one `orjson.loads`. Concurrent identical computations in
one process run once (single-flight); the other callers await the same future.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from bem import redis_keys
from bem.runtime.metrics import SHARED, Metrics
from bem.runtime.redis_link import RedisLink

if TYPE_CHECKING:
    from bem.runtime.otel import Tracing

KEY_PREFIX = redis_keys.CACHE
_ENTRY_OVERHEAD = 120  # bytes per L1 entry beyond key and value: dict slot, OrderedDict link


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, so equal inputs hash equally whatever their key order."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def exact(data: bytes) -> bytes:
    """A copy of `data` that holds exactly its length in memory, for bytes kept long.

    orjson >= 3.12 returns bytes that keep the whole buffer it grew while writing (64 KiB
    for a 3 KB result: ijl/orjson's byteswriter never shrinks it), and `len()` does not
    show it. Keeping such values made the L1 cache hold ~20x its CACHE_SIZE bound in RSS;
    the soak found it. (`bytes(b)` would return `b` itself; a memoryview forces the copy.)
    """
    return bytes(memoryview(data))


class LRUBytes:
    """An LRU map of str -> bytes whose total size never exceeds `capacity` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self._data: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> bytes | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        cost = len(key) + len(value) + _ENTRY_OVERHEAD
        if cost > self.capacity:
            return  # larger than the whole cache: caching it would evict everything
        value = exact(value)  # the bound counts len(value): make that what it holds
        old = self._data.pop(key, None)
        if old is not None:
            self.size -= len(key) + len(old) + _ENTRY_OVERHEAD
        self._data[key] = value
        self.size += cost
        while self.size > self.capacity:
            k, v = self._data.popitem(last=False)
            self.size -= len(k) + len(v) + _ENTRY_OVERHEAD

    def clear(self) -> None:
        self._data.clear()
        self.size = 0


class Cache:
    def __init__(self, capacity: int, redis: RedisLink, metrics: Metrics, ttl: int) -> None:
        self.l1 = LRUBytes(capacity)
        self.redis = redis
        self.ttl = ttl
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        c = metrics.cluster
        self._m = {
            (level, result): metrics.cache_requests.labels(SHARED, c, level, result)
            for level in ("l1", "redis") for result in ("hit", "miss")
        }
        self._bytes = metrics.cache_bytes.labels(SHARED, c)
        self._entries = metrics.cache_entries.labels(SHARED, c)
        self.tracing: Tracing | None = None  # set by the runtime when tracing is on

    @staticmethod
    def key(operation: str, key_input: Any) -> str:
        return f"{KEY_PREFIX}{operation}:{content_hash(key_input)}"

    async def get_raw(self, key: str) -> tuple[bytes | None, str]:
        """Look a key up in L1 then Redis; returns (value, level it came from or 'miss')."""
        if self.tracing is not None:
            from bem.runtime.spans import cache_lookup

            return await cache_lookup(self.tracing, self._lookup, key)  # type: ignore[no-any-return]
        return await self._lookup(key)

    async def _lookup(self, key: str) -> tuple[bytes | None, str]:
        value = self.l1.get(key)
        if value is not None:
            self._m["l1", "hit"].inc()
            return value, "l1"
        self._m["l1", "miss"].inc()
        if not self.redis.configured:
            return None, "miss"
        value = await self.redis.optional(lambda r: r.get(key), None)
        if value is not None:
            self._m["redis", "hit"].inc()
            self._store_l1(key, value)
            return value, "redis"
        self._m["redis", "miss"].inc()
        return None, "miss"

    async def put_raw(self, key: str, value: bytes, ttl: int | None = None) -> None:
        self._store_l1(key, value)
        ex = ttl or self.ttl
        await self.redis.optional(lambda r: r.set(key, value, ex=ex), None)

    async def memoize(self, operation: str, key_input: Any,
                      compute: Callable[[], Awaitable[Any]]) -> Any:
        """Return the cached result of `compute` for this input, computing it at most once.

        `compute` must return a JSON-serialisable value; the caller gets the value decoded
        from its canonical bytes, identical whether it was computed, hit in L1 or in Redis.
        """
        key = self.key(operation, key_input)
        raw, _level = await self.get_raw(key)
        if raw is not None:
            return orjson.loads(raw)
        pending = self._inflight.get(key)
        if pending is not None:
            return orjson.loads(await asyncio.shield(pending))
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            raw = orjson.dumps(await compute(), option=orjson.OPT_SERIALIZE_NUMPY)
            await self.put_raw(key, raw)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(raw)
        finally:
            del self._inflight[key]
        return orjson.loads(raw)

    def _store_l1(self, key: str, value: bytes) -> None:
        self.l1.put(key, value)
        self._bytes.set(self.l1.size)
        self._entries.set(len(self.l1))

    def health(self) -> dict[str, Any]:
        used = self.l1.size / self.l1.capacity if self.l1.capacity else 0.0
        return {"status": "pass", "observedValue": round(used * 100, 1), "observedUnit": "%",
                "output": f"{len(self.l1)} entries, {self.l1.size} of {self.l1.capacity} bytes"}
