"""The WebSocket across processes: gateway, logic and compute clusters sharing a real Redis.

An event sent over the WebSocket crosses to the callback engine (logic process, HTTP), is
appended to the Redis stream, processed, and its pulses come back through Redis pub/sub to
every subscriber of the gateway; a stored graph is announced the same way; the `health`
topic follows a cluster being killed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tests.services.ecm_ws.test_ws import recv
from tests.support import Topology, redis_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform() -> Iterator[Topology]:
    with redis_server() as redis, \
            Topology(["compute", "logic", "gateway"], redis_url=redis.url) as topology:
        yield topology


def ws_url(topology: Topology) -> str:
    return f"ws://127.0.0.1:{topology.plan['ecm_ws']}/ws"


async def next_of(ws: Any, kind: str) -> dict[str, Any]:
    """The next message of a type, skipping the others (pushes interleave with answers)."""
    while (message := await recv(ws))["type"] != kind:
        pass
    return message


async def test_event_over_the_websocket_comes_back_as_pulses(platform: Topology,
                                                             sample: dict[str, Any]) -> None:
    async with websockets.connect(ws_url(platform)) as ws, \
            websockets.connect(ws_url(platform)) as watcher, httpx.AsyncClient() as http:
        for client in (ws, watcher):
            await next_of(client, "hello")
        await ws.send('{"type": "subscribe", "topic": "graph"}')
        for client in (ws, watcher):
            await client.send('{"type": "subscribe", "topic": "pulses"}')
            await next_of(client, "subscribed")

        stored = await http.post(platform.url("graph_runtime") + "/graphs", json=sample)
        graph_id = stored.json()["graph_id"]
        announced = await next_of(ws, "graph")
        assert announced["payload"]["graph_id"] == graph_id

        event = {"idempotency_key": "platform-1", "type": "investment", "node": "V02",
                 "graph_id": graph_id, "magnitude": 1.5}
        await ws.send(orjson.dumps({"type": "event", "id": 1, "payload": event}).decode())
        ack = await next_of(ws, "ack")
        assert ack["id"] == 1 and ack["payload"]["durable"] is True
        event_id = ack["payload"]["event_id"]
        for client in (ws, watcher):  # both subscribers get the pulses, via Redis pub/sub
            pulse = await next_of(client, "pulse")
            assert pulse["payload"]["event_id"] == event_id
            assert pulse["payload"]["graph_id"] == graph_id


async def test_health_topic_follows_a_killed_cluster(platform: Topology) -> None:
    async with websockets.connect(ws_url(platform)) as ws:
        await ws.send('{"type": "subscribe", "topic": "health"}')
        first = await next_of(ws, "health")
        assert first["payload"]["clusters"]["logic"]["status"] == "pass"
        platform["logic"].kill()
        while (await next_of(ws, "health"))["payload"]["clusters"]["logic"]["status"] != "fail":
            pass  # one push per change; the first may still be the replica turning warn
