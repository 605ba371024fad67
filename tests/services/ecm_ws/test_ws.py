"""The ECM WebSocket on a real in-loop gateway, driven by the `websockets` client."""

from __future__ import annotations

import asyncio
import math
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bem.services.ecm_ws.hub import QUEUE_LIMIT
from tests.support import make_settings, run_cluster, url_of

RECV_TIMEOUT = 10.0


class Gateway:
    def __init__(self, sup: Any) -> None:
        self.sup = sup
        self.http_url = url_of(sup, "ecm_ws")
        self.ws_url = f"ws://127.0.0.1:{sup.ports['ecm_ws']}/ws"

    async def connect(self, query: str = "", **kwargs: Any) -> ClientConnection:
        ws = await websockets.connect(self.ws_url + query, **kwargs)
        hello = await recv(ws)
        assert hello["type"] == "hello", hello
        return ws

    async def info(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            r = await http.get(self.http_url + "/ws/info")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        await self.sup.runtime.bus.publish(topic, message)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    return orjson.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))  # type: ignore


async def ask(ws: ClientConnection, message: Any) -> dict[str, Any]:
    await ws.send(message if isinstance(message, str | bytes) else orjson.dumps(message).decode())
    return await recv(ws)


def send_buffer_max() -> int:
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except OSError:
        return 4 * 1024 * 1024  # Linux's default maximum


async def assert_open(ws: ClientConnection, tag: str = "still-open") -> None:
    assert await ask(ws, {"type": "ping", "id": tag, "payload": {"n": 1}}) == {
        "type": "pong", "id": tag, "payload": {"n": 1}}


@pytest.fixture
async def gw() -> AsyncIterator[Gateway]:
    async with run_cluster("gateway", services=["ecm_ws"]) as sup:
        yield Gateway(sup)


async def test_subscribe_receives_pulses_until_unsubscribed(gw: Gateway) -> None:
    async with await gw.connect() as ws:
        assert await ask(ws, {"type": "subscribe", "id": 1, "topic": "pulses"}) == {
            "type": "subscribed", "id": 1, "topic": "pulses"}
        pulse = {"type": "pulse", "event_id": "e1", "pulse_type": "bid", "source": "V01",
                 "node": "V07", "phase": "gamma", "value": 0.5, "hop": 2, "graph_id": None}
        await gw.publish("pulses", pulse)
        assert await recv(ws) == {"type": "pulse", "topic": "pulses", "payload": pulse}
        assert (await gw.info())["subscribers"] == {"pulses": 1, "graph": 0, "health": 0}
        assert await ask(ws, {"type": "unsubscribe", "id": "u", "topic": "pulses"}) == {
            "type": "unsubscribed", "id": "u", "topic": "pulses"}
        await gw.publish("pulses", {**pulse, "event_id": "e2"})
        await assert_open(ws)  # the next message is the pong, not the pulse


async def test_graph_topic_announces_stored_graphs(sample: dict[str, Any]) -> None:
    async with run_cluster("gateway", services=["ecm_ws", "graph_runtime"]) as sup:
        gw = Gateway(sup)
        async with await gw.connect() as ws, httpx.AsyncClient() as http:
            await ask(ws, {"type": "subscribe", "topic": "graph"})
            stored = await http.post(url_of(sup, "graph_runtime") + "/graphs", json=sample)
            assert stored.status_code == 201
            push = await recv(ws)
        assert push == {"type": "graph", "topic": "graph", "payload": {
            "type": "graph_stored", "graph_id": stored.json()["graph_id"], "nodes": 10,
            "edges": 12}}


async def test_health_topic_pushes_the_platform_status(gw: Gateway) -> None:
    # Only ecm_ws runs: every other service is unreachable at its static address.
    async with await gw.connect() as ws:
        await ask(ws, {"type": "subscribe", "topic": "health"})
        push = await recv(ws)
    assert push["type"] == "health" and push["topic"] == "health"
    health = push["payload"]
    assert health["status"] == "fail" and health["source"] == "static"
    assert health["services"]["ecm_ws"] == "pass" and health["services"]["sfde"] == "fail"
    assert health["clusters"]["compute"]["status"] == "fail"


@pytest.mark.parametrize(("frame", "code", "field", "needle"), [
    ("{not json", "bad_json", None, "malformed JSON"),
    (b"\x00\x01binary", "bad_frame", None, "binary frames are not supported"),
    ("[1, 2]", "bad_message", None, "JSON object"),
    ('{"id": 7, "type": "teleport"}', "unknown_type", "type", "'teleport'"),
    ('{"id": 7, "topic": "pulses"}', "validation_error", "type", "type: required"),
    ('{"id": 7, "type": "subscribe"}', "validation_error", "topic", "topic: required"),
    ('{"id": 7, "type": "subscribe", "topic": "weather"}', "validation_error", "topic",
     "unknown topic 'weather'"),
    ('{"id": 7, "type": "event"}', "validation_error", "payload", "payload: required"),
    ('{"id": 7, "type": "event", "payload": [1]}', "validation_error", "payload",
     "must be an object"),
    ('{"id": {"x": 1}, "type": "ping"}', "validation_error", "id", "id: must be"),
])
async def test_bad_messages_get_an_error_and_the_connection_stays_open(
        gw: Gateway, frame: str | bytes, code: str, field: str | None, needle: str) -> None:
    async with await gw.connect() as ws:
        answer = await ask(ws, frame)
        assert answer["type"] == "error", answer
        assert answer["payload"]["error"] == code
        assert answer["payload"].get("field") == field
        assert needle in answer["payload"]["message"]
        if '"id": 7' in str(frame):
            assert answer["id"] == 7
        await assert_open(ws)


async def test_message_over_the_limit_closes_with_1009_others_unaffected() -> None:
    settings = make_settings(max_ws_message_size=64 * 1024)
    async with run_cluster("gateway", settings, services=["ecm_ws"]) as sup:
        gw = Gateway(sup)
        async with await gw.connect(max_size=None) as ws, await gw.connect() as other:
            filler = "x" * (64 * 1024 - 100)  # just under the limit once framed as JSON
            near = {"type": "ping", "id": 1, "payload": {"f": filler}}
            assert len(orjson.dumps(near)) <= 64 * 1024
            assert (await ask(ws, near))["payload"] == {"f": filler}
            await ws.send('{"type": "ping", "payload": "' + "x" * (64 * 1024) + '"}')
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            await assert_open(other)


async def test_idle_clients_get_heartbeats(gw: Gateway) -> None:
    async with await gw.connect("?heartbeat=1") as ws:
        beat = await recv(ws)
        assert beat["type"] == "heartbeat" and beat["payload"]["connections"] == 1
        await assert_open(ws)
    async with websockets.connect(gw.ws_url + "?heartbeat=0.01") as ws:
        answer = await recv(ws)
        assert answer["payload"]["field"] == "heartbeat" and "[1, 300]" in \
            answer["payload"]["message"]
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_slow_client_loses_oldest_pushes_without_stalling_others(gw: Gateway) -> None:
    """A client that never reads fills its TCP buffers, then its outbox; the others keep
    receiving every pulse, in order, while it loses its oldest ones."""
    fast = await gw.connect(compression=None)
    # A small fixed receive buffer (no autotuning) and max_queue=1: the slow client's
    # library stops reading almost at once and its kernel buffer fills quickly.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", gw.sup.ports["ecm_ws"]))
    sock.setblocking(False)
    slow = await gw.connect(sock=sock, max_queue=1, max_size=None, compression=None)
    try:
        for ws in (fast, slow):
            await ask(ws, {"type": "subscribe", "topic": "pulses"})
        filler = os.urandom(4096).hex()  # 8 KiB that compression could not shrink anyway
        # Twice what the server's socket send buffer (at most tcp_wmem's maximum) and the
        # slow client's outbox can hold, so the outbox must overflow.
        size = 50
        batches = math.ceil(2 * (send_buffer_max() + QUEUE_LIMIT * 8192) / (8192 * size))
        for batch in range(batches):
            for i in range(size):
                await gw.publish("pulses", {"seq": batch * size + i, "filler": filler})
            for i in range(size):
                push = await recv(fast)
                assert push["payload"]["seq"] == batch * size + i
        info = await gw.info()
        assert info["dropped"] > 0 and info["connections"] == 2, info
        assert info["queued"] <= QUEUE_LIMIT
        # The slow client reads now: at some point it is told how much it lost, and its
        # last pulse is the last one published.
        seen_dropped, last = 0, -1
        while last != batches * size - 1:
            message = await recv(slow)
            if message["type"] == "dropped":
                seen_dropped += message["payload"]["count"]
            elif message["type"] == "pulse":
                assert message["payload"]["seq"] > last
                last = message["payload"]["seq"]
        assert seen_dropped == info["dropped"]
    finally:
        await fast.close()
        await slow.close()


async def test_many_idle_connections_are_counted_and_served(gw: Gateway) -> None:
    n = 250
    clients = await asyncio.gather(*(gw.connect("?heartbeat=1") for _ in range(n)))
    try:
        assert (await gw.info())["connections"] == n
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(gw.http_url + "/metrics")).text
        assert f'bem_ws_connections{{cluster="gateway",service="ecm_ws"}} {float(n)}' in metrics
        beats = await asyncio.gather(*(recv(ws) for ws in clients))
        assert {b["type"] for b in beats} == {"heartbeat"}
        await assert_open(clients[-1])
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))
    for _ in range(100):
        if (await gw.info())["connections"] == 0:
            break
        await asyncio.sleep(0.05)
    assert (await gw.info())["connections"] == 0


async def test_api_keys_guard_the_handshake() -> None:
    settings = make_settings(BEM_API_KEYS="s3cret")
    async with run_cluster("gateway", settings, services=["ecm_ws"]) as sup:
        gw = Gateway(sup)
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(gw.ws_url)
        assert refused.value.response.status_code == 401
        async with await gw.connect("?api_key=s3cret") as ws:
            await assert_open(ws)


async def test_events_are_acked_by_the_callback_engine_and_pulses_follow() -> None:
    async with run_cluster("ws-and-logic", services=[
            "ecm_ws", "callback_engine", "graph_runtime"]) as sup:
        gw = Gateway(sup)
        async with await gw.connect() as ws:
            await ask(ws, {"type": "subscribe", "topic": "pulses"})
            event = {"idempotency_key": "ws-k1", "type": "bid", "node": "V01",
                     "magnitude": 2.0, "payload": {"from": "test"}}
            ack = await ask(ws, {"type": "event", "id": "e1", "payload": event})
            assert ack["type"] == "ack" and ack["id"] == "e1", ack
            event_id = ack["payload"]["event_id"]
            assert ack["payload"] == {"event_id": event_id, "idempotency_key": "ws-k1",
                                      "duplicate": False, "durable": False}
            # The engine routes the pulse along the sample graph and publishes the result.
            pulse = await recv(ws)
            while pulse["type"] != "pulse":
                pulse = await recv(ws)
            assert pulse["payload"]["event_id"] == event_id
            assert pulse["payload"]["pulse_type"] == "bid"

            again = await ask(ws, {"type": "event", "id": "e2", "payload": event})
            while again["type"] == "pulse":
                again = await recv(ws)
            assert again["payload"]["event_id"] == event_id and again["payload"]["duplicate"]

            bad = await ask(ws, {"type": "event", "id": "e3", "payload": {
                "idempotency_key": "ws-k2", "type": "telepathy", "node": "V01"}})
            while bad["type"] == "pulse":
                bad = await recv(ws)
            assert bad["type"] == "error" and bad["id"] == "e3"
            assert bad["payload"]["status"] == 422 and bad["payload"]["field"] == "payload.type"
            assert bad["payload"]["message"].startswith("payload.type:")
            await assert_open_skipping_pulses(ws)


async def assert_open_skipping_pulses(ws: ClientConnection) -> None:
    await ws.send(orjson.dumps({"type": "ping", "id": "last"}).decode())
    while (message := await recv(ws))["type"] == "pulse":
        pass
    assert message == {"type": "pong", "id": "last"}
