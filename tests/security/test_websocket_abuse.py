"""Hostile clients on the ECM WebSocket of a real gateway process.

tests/services/ecm_ws checks the protocol message by message (bad JSON, binary frames, a
message over the limit, a slow reader, idle clients) on an in-loop server. Here, on the
`single` cluster of conftest.py: random frames by the hundred on one connection, a
compression bomb and a fragmented message over the size limit, a flood of requests from a
client that does not read, and a thousand idle connections - each bounded in what it costs
the server (RSS of the process) and none disturbing the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import orjson
import psutil
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bem.services.ecm_ws.protocol import CLIENT_TYPES, TOPICS
from tests.support import Topology

pytestmark = pytest.mark.slow

REPLIES = {"pong", "subscribed", "unsubscribed", "ack", "error"}
PUSHES = {"pulse", "graph", "health", "heartbeat", "dropped"}
FLOOD = 5000
IDLE = 1000
LIMIT = 1024 * 1024  # MAX_WS_MESSAGE_SIZE's default


def ws_url(cluster: Topology) -> str:
    return cluster.url("ecm_ws").replace("http://", "ws://") + "/ws"


def rss_mb(cluster: Topology) -> float:
    assert cluster["single"].process is not None
    return psutil.Process(cluster["single"].process.pid).memory_info().rss / 2**20


def reply_to(ws: ClientConnection) -> dict[str, Any]:
    """The next reply, skipping pushes (a random `subscribe` may have asked for them)."""
    while True:
        message = orjson.loads(ws.recv(timeout=15))
        if message["type"] not in PUSHES:
            return message  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def hostile(cluster: Topology) -> Iterator[ClientConnection]:
    with connect(ws_url(cluster) + "?heartbeat=300", max_size=None) as ws:
        assert orjson.loads(ws.recv(timeout=15))["type"] == "hello"
        yield ws


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                           | st.floats(allow_nan=False), lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=12)
messages = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from([*CLIENT_TYPES, "teleport", ""]) | json_values,
    "id": st.text(max_size=10) | st.integers() | json_values,
    "topic": st.sampled_from(TOPICS) | json_values,
    "payload": json_values})
# json, not orjson: integers beyond 64 bits are hostile input too
frames = st.one_of(messages.map(json.dumps), json_values.map(json.dumps),
                   st.text(max_size=200), st.binary(max_size=200))


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames)
def test_any_frame_gets_one_reply_and_the_connection_stays_open(
        hostile: ClientConnection, frame: str | bytes) -> None:
    hostile.send(frame)
    reply = reply_to(hostile)
    assert reply["type"] in REPLIES, reply
    if reply["type"] == "error":
        assert set(reply["payload"]) <= {"error", "message", "field", "status"}
        assert reply["payload"].get("status", 400) < 500, reply
    hostile.send('{"type": "ping", "id": "alive"}')
    assert reply_to(hostile) == {"type": "pong", "id": "alive"}


def closed_with(ws: ClientConnection) -> int | None:
    with contextlib.suppress(TimeoutError), pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=15)
    return closed.value.rcvd.code if closed.value.rcvd else None


def test_messages_over_the_limit_close_with_1009_even_compressed_or_fragmented(
        cluster: Topology) -> None:
    before = rss_mb(cluster)
    # A compression bomb: 64 MB of one letter is ~64 kB deflated on the wire.
    with connect(ws_url(cluster), max_size=None, compression="deflate") as bomb:
        bomb.recv(timeout=15)
        bomb.send('{"type": "ping", "payload": "' + "x" * (64 * LIMIT) + '"}')
        assert closed_with(bomb) == 1009
    # A message sent as 2000 fragments of 1 kB, each one small. The server closes while
    # the client is still sending, so the client may lose the close frame (code None).
    with connect(ws_url(cluster), max_size=None, compression=None) as fragments:
        fragments.recv(timeout=15)
        with contextlib.suppress(ConnectionClosed):
            fragments.send(iter(["x" * 1024] * 2000))
        assert closed_with(fragments) in (1009, None)
    with connect(ws_url(cluster)) as other:
        other.recv(timeout=15)
        other.send('{"type": "ping"}')
        assert reply_to(other) == {"type": "pong"}
    assert rss_mb(cluster) - before < 32, "the server inflated or buffered the message"


async def test_a_flood_from_a_client_that_does_not_read(cluster: Topology) -> None:
    """Replies are never dropped: the flooding client's reader is paused instead (TCP
    back-pressure on it alone), so memory stays bounded and others are served meanwhile."""
    before = rss_mb(cluster)
    async with websockets.connect(ws_url(cluster), max_queue=1, compression=None) as flooder, \
            websockets.connect(ws_url(cluster)) as other:
        await flooder.recv()
        await other.recv()
        # 5000 x 4 kB: several times what the kernel's socket buffers can hold
        ping = '{"type": "ping", "payload": "' + os.urandom(2048).hex() + '"}'
        sending = asyncio.create_task(send_all(flooder, [ping] * FLOOD))
        for i in range(20):
            await other.send(f'{{"type": "ping", "id": {i}}}')
            assert orjson.loads(await asyncio.wait_for(other.recv(), 15)) == {
                "type": "pong", "id": i}
        grown = rss_mb(cluster) - before
        assert not sending.done(), "the server read the whole flood: no back-pressure"
        pongs = 0
        while pongs < FLOOD:
            message = orjson.loads(await asyncio.wait_for(flooder.recv(), 30))
            pongs += message["type"] == "pong"
        await sending
    assert pongs == FLOOD
    assert grown < 32, f"{grown:.0f} MB for a flood of {FLOOD} messages"


async def send_all(ws: Any, frames: list[str]) -> None:
    for frame in frames:
        await ws.send(frame)


async def test_a_thousand_idle_connections(cluster: Topology) -> None:
    before = rss_mb(cluster)
    idle = await asyncio.gather(*(websockets.connect(ws_url(cluster) + "?heartbeat=300")
                                  for _ in range(IDLE)))
    try:
        hellos = await asyncio.gather(*(ws.recv() for ws in idle))
        assert {orjson.loads(h)["type"] for h in hellos} == {"hello"}
        per_connection_kb = (rss_mb(cluster) - before) * 1024 / IDLE
        async with websockets.connect(ws_url(cluster)) as fresh:
            await fresh.recv()
            await fresh.send('{"type": "ping", "id": "fresh"}')
            assert orjson.loads(await fresh.recv()) == {"type": "pong", "id": "fresh"}
    finally:
        await asyncio.gather(*(ws.close() for ws in idle))
    print(f"\n{IDLE} idle WebSocket connections: {per_connection_kb:.0f} kB of RSS each")
    assert per_connection_kb < 200


@pytest.mark.parametrize(("headers", "statuses"), [
    ({}, {400, 404, 405, 426}),  # plain HTTP on the WebSocket path
    ({"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
     {400, 426}),  # no key
    ({"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "8",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, {400, 426}),
])
def test_broken_handshakes_are_4xx(cluster: Topology, headers: dict[str, str],
                                   statuses: set[int]) -> None:
    import httpx

    answer = httpx.get(ws_url(cluster).replace("ws://", "http://"), headers=headers,
                       timeout=10)
    assert answer.status_code in statuses, (answer.status_code, answer.text)
