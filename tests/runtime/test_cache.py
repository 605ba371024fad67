"""The two-level cache, with a real redis-server."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator

import orjson
import pytest

from bem.runtime.cache import Cache, LRUBytes
from bem.runtime.metrics import Metrics
from bem.runtime.redis_link import RedisLink
from tests.support import RedisServer


def test_lru_never_exceeds_its_byte_bound() -> None:
    lru = LRUBytes(2_000)
    for i in range(100):
        lru.put(f"k{i}", b"x" * 300)
        assert lru.size <= 2_000
    assert lru.get("k0") is None and lru.get("k99") == b"x" * 300
    lru.put("huge", b"x" * 5_000)  # bigger than the cache: not stored, nothing evicted
    assert lru.get("huge") is None and lru.get("k99") is not None


def test_lru_bound_is_what_it_holds_in_memory() -> None:
    """orjson's bytes keep the buffer they grew in (64 KiB for a 3 KB result, never shown
    by len()); the LRU must hold only the bytes it counts, or its bound means nothing."""
    results = [{f"n{i}": 0.123456789 * i * k for i in range(150)} for k in range(200)]
    lru = LRUBytes(10**9)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k, result in enumerate(results):
            lru.put(f"key-{k}", orjson.dumps(result))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(lru) == 200 and lru.size > 200 * 2000
    assert held < 1.5 * lru.size, f"{held} bytes held for an LRU that counts {lru.size}"


def test_keys_are_content_hashes() -> None:
    assert Cache.key("op", {"a": 1, "b": [1, 2]}) == Cache.key("op", {"b": [1, 2], "a": 1})
    assert Cache.key("op", {"a": 1}) != Cache.key("op2", {"a": 1})


async def make_cache(url: str | None) -> tuple[Cache, RedisLink, Metrics]:
    metrics = Metrics("test")
    link = RedisLink(url)
    await link.start()
    return Cache(1 << 20, link, metrics, ttl=60), link, metrics


def count(metrics: Metrics, level: str, result: str) -> float:
    return metrics.registry.get_sample_value(
        "bem_cache_requests_total",
        {"service": "cluster", "cluster": "test", "level": level, "result": result}) or 0.0


async def test_single_flight() -> None:
    cache, link, _ = await make_cache(None)
    calls = 0

    async def compute() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"v": 42}

    results = await asyncio.gather(*(cache.memoize("op", {"x": 1}, compute) for _ in range(20)))
    assert results == [{"v": 42}] * 20 and calls == 1
    await link.close()


async def test_failure_is_not_cached() -> None:
    cache, link, _ = await make_cache(None)

    async def boom() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError):
        await cache.memoize("op", 1, boom)

    async def ok() -> int:
        return 5

    assert await cache.memoize("op", 1, ok) == 5
    await link.close()


@pytest.fixture
async def two_caches(redis: RedisServer) -> AsyncIterator[tuple[Cache, Cache, Metrics]]:
    a, la, _ = await make_cache(redis.url)
    b, lb, mb = await make_cache(redis.url)
    yield a, b, mb
    await la.close()
    await lb.close()


async def test_redis_level_is_shared(two_caches: tuple[Cache, Cache, Metrics]) -> None:
    a, b, mb = two_caches

    async def compute() -> list[int]:
        return [1, 2, 3]

    async def must_not_run() -> list[int]:
        raise AssertionError("computed again although Redis holds the result")

    assert await a.memoize("op", "in", compute) == [1, 2, 3]
    assert await b.memoize("op", "in", must_not_run) == [1, 2, 3]
    assert count(mb, "redis", "hit") == 1
    assert await b.memoize("op", "in", must_not_run) == [1, 2, 3]
    assert count(mb, "l1", "hit") == 1


async def test_redis_outage_degrades_and_recovers(redis: RedisServer) -> None:
    cache, link, _ = await make_cache(redis.url)
    assert link.up
    redis.kill()
    n = 0

    async def compute() -> int:
        nonlocal n
        n += 1
        return n

    assert await cache.memoize("op", "a", compute) == 1  # computed, served from memory
    assert not link.up and link.health()["status"] == "warn"
    assert await cache.memoize("op", "a", compute) == 1  # L1 still serves
    redis.start()
    for _ in range(100):
        if link.up:
            break
        await asyncio.sleep(0.05)
    assert link.up and link.health()["status"] == "pass"
    assert await cache.memoize("op", "b", compute) == 2
    await link.close()
