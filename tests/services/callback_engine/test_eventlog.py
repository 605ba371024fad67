"""The embedded log on its own (retention, capacity, ids), and the service before start."""

from __future__ import annotations

import asyncio

import pytest

from bem.clusters import PLACEMENT
from bem.errors import InsufficientStorage, ServiceUnavailable
from bem.runtime.bus import PulseBus
from bem.runtime.redis_link import RedisLink
from bem.runtime.runtime import Runtime
from bem.services.callback_engine import api as callback_engine
from bem.services.callback_engine.consumer import record
from bem.services.callback_engine.eventlog import Finished, MemoryLog
from tests.support import make_settings


def fields(key: str) -> dict[str, object]:
    return {"idempotency_key": key, "type": "bid", "node": "V01", "graph_id": None,
            "magnitude": 1.0, "payload": {}, "accepted_at": 0.0}


async def finish_all(log: MemoryLog) -> None:
    entries = await log.read(100, own=False)
    await log.finish([Finished(e, record(e, "processed", 1, {}, None), "processed")
                      for e in entries])


async def test_ids_increase_and_retention_forgets_old_keys() -> None:
    log = MemoryLog(PulseBus(RedisLink(None)), retention=0.05)
    first = await log.append([fields(f"k{i}") for i in range(3)])
    ids = [eid for eid, _ in first]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and \
        len(set(ids)) == 3
    await finish_all(log)
    assert (await log.get(ids[0]))["status"] == "processed"  # type: ignore[index]
    assert (await log.append([fields("k0")]))[0] == (ids[0], True)
    await asyncio.sleep(0.06)
    await log.maintain()
    assert await log.get(ids[0]) is None
    [(again, dup)] = await log.append([fields("k0")])
    assert not dup and again != ids[0]


async def test_capacity_bounds_unfinished_events() -> None:
    log = MemoryLog(PulseBus(RedisLink(None)), retention=3600, capacity=2)
    await log.append([fields("a"), fields("b")])
    try:
        await log.append([fields("c")])
    except InsufficientStorage as exc:
        assert exc.field == "events" and "limit 2" in exc.message
    else:
        raise AssertionError("a full embedded log must refuse events")
    assert (await log.append([fields("a")]))[0][1] is True  # a duplicate still answers


async def test_in_process_calls_before_start_are_503() -> None:
    rt = Runtime(make_settings(), "test", [callback_engine.service], PLACEMENT)
    try:
        with pytest.raises(ServiceUnavailable, match="not running yet"):
            await rt.client.call(callback_engine.stats)
    finally:
        await rt.close()
