"""The `pulses` subscription over graphql-transport-ws, fed by the pulse bus: in-process
without Redis, the Redis channel `bem:bus:pulses` with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from bem.runtime.bus import CHANNEL_PREFIX
from bem.runtime.supervisor import Supervisor
from tests.services.graphql.client import TransportWS
from tests.support import RedisServer, make_settings, run_cluster

PULSES = """subscription($types: [String!]) {
  pulses(types: $types) { eventId pulseType source node phase value hop graphId data }
}"""


def pulse(event_id: str, pulse_type: str, node: str, value: float) -> dict[str, Any]:
    """A message shaped like the callback engine's (see callback_engine/compute.py)."""
    return {"type": "pulse", "event_id": event_id, "pulse_type": pulse_type, "source": "V01",
            "node": node, "phase": "beta", "value": value, "hop": 1, "via": "V01",
            "graph_id": None, "magnitude": 1.0, "callback": "relational"}


def ws_url(sup: Supervisor) -> str:
    return f"ws://127.0.0.1:{sup.ports['graphql']}/graphql"


async def subscribed(sup: Supervisor, count: int) -> None:
    """Until `count` subscribers listen on the pulse topic (the subscription is live)."""
    async with asyncio.timeout(10):
        while sup.runtime.bus.subscriber_count("pulses") < count:
            await asyncio.sleep(0.01)


@pytest.fixture
async def gateway() -> AsyncIterator[Supervisor]:
    async with run_cluster("graphql") as sup:
        yield sup


async def test_pulses_from_the_in_process_bus(gateway: Supervisor) -> None:
    async with TransportWS.connect(ws_url(gateway)) as ws:
        await ws.subscribe("all", PULSES)
        await ws.subscribe("decay", PULSES, {"types": ["decay"]})
        await subscribed(gateway, 2)
        await gateway.runtime.bus.publish("pulses", pulse("e1", "bid", "V04", 0.5))
        await gateway.runtime.bus.publish("pulses", pulse("e2", "decay", "V05", 0.25))
        got = [await ws.receive() for _ in range(3)]
        by_sub = {(m["id"], m["payload"]["data"]["pulses"]["eventId"]) for m in got}
        assert by_sub == {("all", "e1"), ("all", "e2"), ("decay", "e2")}
        first = next(m for m in got if m["id"] == "all")["payload"]["data"]["pulses"]
        assert first == {"eventId": "e1", "pulseType": "bid", "source": "V01", "node": "V04",
                         "phase": "beta", "value": 0.5, "hop": 1, "graphId": None,
                         "data": pulse("e1", "bid", "V04", 0.5)}
        # Completing a subscription unsubscribes it from the bus.
        await ws.send({"id": "all", "type": "complete"})
        await subscribed_at_most(gateway, 1)
    await subscribed_at_most(gateway, 0)


async def subscribed_at_most(sup: Supervisor, count: int) -> None:
    async with asyncio.timeout(10):
        while sup.runtime.bus.subscriber_count("pulses") > count:
            await asyncio.sleep(0.01)


async def test_a_bad_subscription_is_an_error_not_a_hang(gateway: Supervisor) -> None:
    async with TransportWS.connect(ws_url(gateway)) as ws:
        await ws.subscribe("bad", "subscription { pulses { no_such_field } }")
        answer = await ws.receive()
        assert answer["type"] == "error" and answer["id"] == "bad"
        assert "no_such_field" in answer["payload"][0]["message"]


async def test_pulses_from_the_redis_channel(redis: RedisServer) -> None:
    async with run_cluster("graphql", make_settings(redis_url=redis.url)) as sup:
        await asyncio.wait_for(sup.runtime.bus.listening.wait(), 10)
        async with TransportWS.connect(ws_url(sup)) as ws:
            await ws.subscribe("1", PULSES)
            await subscribed(sup, 1)
            # Published by another process: a plain Redis client on the bus channel.
            publisher = aioredis.Redis.from_url(redis.url)
            try:
                await publisher.publish(CHANNEL_PREFIX + "pulses",
                                        orjson.dumps(pulse("e9", "fit", "V06", 0.75)))
            finally:
                await publisher.aclose()
            answer = await ws.receive()
            assert answer["type"] == "next"
            assert answer["payload"]["data"]["pulses"]["eventId"] == "e9"
            assert answer["payload"]["data"]["pulses"]["value"] == 0.75
