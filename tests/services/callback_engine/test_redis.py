"""callback_engine on a real redis-server: the durable log, the Redis pulse channel,
outages, dead consumers and the atomic finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from bem.runtime.redis_link import RedisLink
from bem.services.callback_engine import redislog
from bem.services.callback_engine.eventlog import Finished
from bem.services.callback_engine.models import PulseEvent
from bem.services.callback_engine.redislog import RedisLog
from tests.services.callback_engine.test_api import event, finished, submit
from tests.support import RedisServer, make_settings, run_cluster, url_of

CHANNEL = "bem:bus:pulses"


@pytest.fixture
async def subscriber(redis: RedisServer) -> AsyncIterator[aioredis.client.PubSub]:
    """An independent redis-py subscriber on the pulse channel."""
    client = aioredis.Redis.from_url(redis.url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(CHANNEL)
    try:
        yield pubsub
    finally:
        await pubsub.aclose()
        await client.aclose()


async def drain(pubsub: aioredis.client.PubSub, count: int, timeout: float = 20.0
                ) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        msg = await pubsub.get_message(timeout=0.5)
        if msg is not None:
            got.append(orjson.loads(msg["data"]))
    return got


def accepted(**fields: Any) -> dict[str, Any]:
    """An event as the service appends it (defaults filled in)."""
    return {**PulseEvent(**event(**fields)).model_dump(mode="json"), "accepted_at": 0.0}


def cluster(redis: RedisServer, **overrides: Any) -> Any:
    settings = make_settings(workers=0, redis_url=redis.url, callback_max_attempts=2,
                             registry_ttl=2.0, **overrides)
    return run_cluster(settings=settings, services=["graph_runtime", "callback_engine"])


async def test_durable_log_and_pulses_on_the_redis_channel(
        redis: RedisServer, subscriber: aioredis.client.PubSub) -> None:
    async with cluster(redis) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "callback_engine")) as ce:
        e1, e2 = event("bid", "V01"), event("reject", "V09")
        r = await ce.post("/events", json={"events": [e1, e2, e1]})
        assert r.status_code == 202 and r.json()["durable"] is True
        a1, a2, dup = r.json()["events"]
        assert dup == {**a1, "duplicate": True}
        states = [await finished(ce, a["event_id"]) for a in (a1, a2)]
        assert [s["status"] for s in states] == ["processed", "processed"]
        total = sum(s["result"]["pulses"] for s in states)
        pulses = await drain(subscriber, total + 1, timeout=0.5)  # +1: nothing more comes
        assert len(pulses) == total == 7 + 6
        by_event = {a["event_id"]: [p for p in pulses if p["event_id"] == a["event_id"]]
                    for a in (a1, a2)}
        assert [p["node"] for p in by_event[a1["event_id"]]] == [
            "V01", "V02", "V04", "V05", "V07", "V08", "V09"]
        assert {p["pulse_type"] for p in by_event[a2["event_id"]]} == {"reject"}

        recent = (await ce.get("/events", params={"limit": 5})).json()["events"]
        assert [e["event_id"] for e in recent] == [a2["event_id"], a1["event_id"]]
        assert recent == states[::-1]

        stats = (await ce.get("/stats")).json()
        assert stats["backend"] == "redis" and stats["durable"] is True
        assert (stats["accepted"], stats["duplicates"], stats["processed"]) == (2, 1, 2)
        assert (stats["depth"], stats["lag"], stats["pending"]) == (0, 0, 0)
        health = (await ce.get("/health")).json()["checks"]["eventlog:durability"][0]
        assert health["status"] == "pass"

    raw = aioredis.Redis.from_url(redis.url)
    try:  # data, not cache: no key of the log may carry a TTL (eviction takes those)
        for key in (redislog.STREAM, redislog.KEYS, redislog.RECORDS, redislog.COUNTERS):
            assert await raw.ttl(key) == -1, key
        assert await raw.xlen(redislog.STREAM) == 0  # finished entries leave the stream
    finally:
        await raw.aclose()


async def test_failing_event_is_parked_with_its_error(redis: RedisServer) -> None:
    async with cluster(redis) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "callback_engine")) as ce:
        [bad] = await submit(ce, event("fit", "V42"))
        state = await finished(ce, bad["event_id"])
        assert (state["status"], state["attempts"]) == ("failed", 2)
        assert state["error"] == "node: 'V42' is not a node of graph 'sample'"
        stats = (await ce.get("/stats")).json()
        assert (stats["failed"], stats["depth"]) == (1, 0)


async def test_redis_outage_is_503_then_service_resumes(redis: RedisServer) -> None:
    async with cluster(redis) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "callback_engine")) as ce:
        [before] = await submit(ce, event("bid", "V02"))
        assert (await finished(ce, before["event_id"]))["status"] == "processed"
        redis.stop()
        for _ in range(2):  # the first request finds the outage, the second is refused at once
            r = await ce.post("/events", json={"events": [event()]})
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "2" and "Redis" in r.json()["message"]
        assert (await ce.get("/stats")).status_code == 503
        assert (await ce.get(f"/events/{before['event_id']}")).status_code == 503

        redis.start()  # same port, same append-only file
        deadline = time.monotonic() + 20
        while (r := await ce.post("/events", json={"events": [event("bid", "V03")]})
               ).status_code == 503 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert r.status_code == 202, r.text
        assert (await finished(ce, r.json()["events"][0]["event_id"]))["status"] == "processed"
        assert (await finished(ce, before["event_id"]))["status"] == "processed"  # kept


async def test_dead_consumers_pending_events_are_reclaimed(redis: RedisServer) -> None:
    link = RedisLink(redis.url)
    await link.start()
    try:
        dead = RedisLog(link, "dead-consumer", retention=3600)
        await dead.start()
        appended = await dead.append([accepted() for _ in range(5)])
        taken = await dead.read(5, own=False)  # delivered to it, never finished
        assert [e.event_id for e in taken] == [eid for eid, _ in appended]
    finally:
        await link.close()
    async with cluster(redis) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "callback_engine")) as ce:
        states = [await finished(ce, eid) for eid, _ in appended]
        assert [s["status"] for s in states] == ["processed"] * 5
        stats = (await ce.get("/stats")).json()
        assert (stats["processed"], stats["pending"], stats["depth"]) == (5, 0, 0)
        raw = aioredis.Redis.from_url(redis.url)
        try:
            names = [c["name"] for c in await raw.xinfo_consumers(redislog.STREAM,
                                                                  redislog.GROUP)]
            assert b"dead-consumer" not in names  # forgotten once its entries moved
        finally:
            await raw.aclose()


async def test_finish_is_atomic_and_happens_once(redis: RedisServer,
                                                 subscriber: aioredis.client.PubSub) -> None:
    link = RedisLink(redis.url)
    await link.start()
    try:
        a, b = RedisLog(link, "a", 3600), RedisLog(link, "b", 3600)
        await a.start()
        [(eid, _)] = await a.append([accepted()])
        [entry] = await a.read(1, own=False)
        pulses = [{"type": "pulse", "event_id": eid, "node": n} for n in ("x", "y")]
        done = Finished(entry, {"event_id": eid, "status": "processed"}, "processed", pulses)
        # two consumers finishing the same entry (a reclaim racing a slow consumer)
        assert await a.finish([done]) == [True]
        assert await b.finish([done]) == [False]
        got = await drain(subscriber, 3, timeout=0.5)
        assert [p["node"] for p in got] == ["x", "y"]  # published once
        stats = await a.stats()
        assert (stats["processed"], stats["depth"], stats["pending"]) == (1, 0, 0)
        assert (await a.get(eid))["status"] == "processed"
    finally:
        await link.close()


async def test_records_and_keys_expire_after_retention(redis: RedisServer) -> None:
    async with cluster(redis, callback_retention=1.0) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "callback_engine")) as ce:
        e = event("bid", "V04")
        [first] = await submit(ce, e)
        assert (await finished(ce, first["event_id"]))["status"] == "processed"
        deadline = time.monotonic() + 20  # the upkeep prunes once a second
        while (await ce.get(f"/events/{first['event_id']}")).status_code == 200 \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert (await ce.get(f"/events/{first['event_id']}")).status_code == 404
        [again] = await submit(ce, e)  # past retention, the key is new again
        assert again["duplicate"] is False and again["event_id"] != first["event_id"]
        assert (await finished(ce, again["event_id"]))["status"] == "processed"
        raw = aioredis.Redis.from_url(redis.url)
        try:
            assert await raw.hexists(redislog.KEYS, e["idempotency_key"])
        finally:
            await raw.aclose()


async def test_redis_out_of_memory_is_507_not_500(redis: RedisServer) -> None:
    raw = aioredis.Redis.from_url(redis.url)
    async with cluster(redis) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "callback_engine")) as ce:
        try:
            await raw.config_set("maxmemory", 1)  # as full as the deployment's volatile-lru
            r = await ce.post("/events", json={"events": [event()]})
            assert r.status_code == 507, r.text
            assert r.json()["field"] == "events" and "maxmemory" in r.json()["message"]
            assert "retry-after" in r.headers
        finally:
            await raw.config_set("maxmemory", 0)
            await raw.aclose()
        [ok] = await submit(ce, event())
        assert (await finished(ce, ok["event_id"]))["status"] == "processed"


async def test_pending_entry_deleted_elsewhere_is_acknowledged(redis: RedisServer) -> None:
    link = RedisLink(redis.url)
    await link.start()
    raw = aioredis.Redis.from_url(redis.url)
    try:
        log = RedisLog(link, "c", 3600)
        await log.start()
        [(eid, _)] = await log.append([accepted()])
        assert len(await log.read(1, own=False)) == 1
        await raw.xdel(redislog.STREAM, eid)  # as if another consumer had finished it
        assert await log.read(10, own=True) == []
        assert (await raw.xpending(redislog.STREAM, redislog.GROUP))["pending"] == 0
    finally:
        await raw.aclose()
        await link.close()
