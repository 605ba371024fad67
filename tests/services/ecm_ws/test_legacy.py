"""The old ECM relay protocol on `ws://HOST:8765/`, on real servers.

The old clients' conversations are replayed as recorded in bem/compat/cases/ecm.py
(tests/compat/test_replay.py); here, what they rely on in depth: the receipts' shapes, pulse
messages becoming events the callback engine processes (and refuses, naming the old field),
the 503 of a log that cannot append, and the limits of `/ws` holding on the root path too.
Messages are copied from the old files named in each test (Cideation/Endpoint).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bem.runtime.supervisor import Supervisor
from bem.services.ecm_ws.hub import RESPONSE_LIMIT
from tests.services.ecm_ws.test_ws import RECV_TIMEOUT, recv
from tests.support import RedisServer, Topology, make_settings, metric_total, run_cluster, url_of

MAX_ATTEMPTS = 2

# neon/interaction_flow_coordinator.py, _send_to_unreal (targets: the clicked node and its
# neighbours; here nodes of the sample project).
PULSE_EFFECT = {"type": "pulse_effect", "pulse_type": "bid_pulse", "targets": ["V01", "V05"],
                "intensity": 0.5, "timestamp": "2025-06-20T14:35:40.000000"}
# tests/test_agent_console.py, test_pulse_connection (sent to 8766 there; see migration.md).
BID_PULSE = {"type": "bid_pulse", "timestamp": 1750430140.0,
             "payload": {"agent_id": "test_agent", "node_target": "V02", "pulse_strength": 0.8}}
# frontend/semantic_pulse_interface.html, triggerPulse('bid_pulse'): names no node.
PAGE_PULSE = {"type": "bid_pulse", "timestamp": "2025-06-20T14:35:40.000Z",
              "payload": {"source": "semantic_pulse_interface", "pulse_id": 1,
                          "visual_trigger": True}}
# tests/test_agent_console.py, simulate_agent_interactions.
NODE_SELECT = {"type": "node_select", "timestamp": 1750430140.0,
               "payload": {"node_id": "building_A", "view": "cytoscape"}}


def root_url(sup: Supervisor) -> str:
    return f"ws://127.0.0.1:{sup.ports['ecm_ws']}"


async def connect(url: str, **kwargs: Any) -> ClientConnection:
    ws = await websockets.connect(url, **kwargs)
    welcome = await recv(ws)
    assert welcome["type"] == "connection_established", welcome
    return ws


async def ask(ws: ClientConnection, message: Any) -> dict[str, Any]:
    await ws.send(message if isinstance(message, str | bytes) else orjson.dumps(message).decode())
    return await recv(ws)


async def assert_open(ws: ClientConnection) -> None:
    answer = await ask(ws, {"type": "ping", "id": "still-open"})
    assert (answer["status"], answer["original_message_id"]) == ("received", "still-open")


@pytest.fixture
async def gw() -> AsyncIterator[Supervisor]:
    async with run_cluster("gateway", services=["ecm_ws"]) as sup:
        yield sup


@pytest.fixture
async def engine() -> AsyncIterator[Supervisor]:
    settings = make_settings(workers=0, callback_max_attempts=MAX_ATTEMPTS)
    async with run_cluster("ws-and-logic", settings, services=[
            "ecm_ws", "callback_engine", "graph_runtime"]) as sup:
        yield sup


async def finished(http: httpx.AsyncClient, base: str, event_id: str, timeout: float = 20.0
                   ) -> dict[str, Any]:
    """Poll the callback engine until the event leaves `pending` (the deadline only bounds a
    broken run)."""
    deadline = time.monotonic() + timeout
    while True:
        r = await http.get(f"{base}/events/{event_id}")
        assert r.status_code == 200, r.text
        if r.json()["status"] != "pending" or time.monotonic() > deadline:
            return r.json()  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)


# --- the relay protocol -----------------------------------------------------------------
async def test_welcome_and_receipts_have_the_old_gateways_shapes(gw: Supervisor) -> None:
    """Final_Phase/ecm_gateway.py's shapes; tests/test_phase1_implementation.py's messages."""
    async with websockets.connect(root_url(gw)) as ws:
        welcome = await recv(ws)
        assert set(welcome) == {"type", "timestamp", "status", "message"}
        assert (welcome["type"], welcome["status"]) == ("connection_established", "received")
        message = {"type": "test_message", "payload": {"action": "ping", "data": "test"},
                   "id": "test_001"}
        receipt = await ask(ws, message)
        assert datetime.fromisoformat(receipt.pop("timestamp")).tzinfo is not None
        assert receipt == {"status": "received", "echo": message["payload"],
                           "type": "test_message", "original_message_id": "test_001",
                           "processing_status": "relayed"}
        # tests/test_phase3_production.py: no type, no payload; the old gateway's defaults.
        bare = await ask(ws, {"data": "A" * 100_000})
        assert (bare["type"], bare["echo"], bare["original_message_id"]) == ("unknown", {}, None)
        # `ping` is an old message like any other: a receipt, not the new protocol's pong.
        assert (await ask(ws, {"type": "ping", "timestamp": 1750430140.0}))["type"] == "ping"
        # The old server parsed binary frames as JSON too.
        assert (await ask(ws, orjson.dumps(NODE_SELECT)))["echo"] == NODE_SELECT["payload"]


@pytest.mark.parametrize(("frame", "kind", "code"), [
    ("invalid json", "json_parse_error", "bad_json"),  # tests/test_phase1_implementation.py
    (b"\xff\xfe", "json_parse_error", "bad_json"),
    ("[1, 2]", "processing_error", "bad_message"),
    ('"node_select"', "processing_error", "bad_message"),
])
async def test_bad_frames_get_an_error_receipt_and_the_connection_stays_open(
        gw: Supervisor, frame: str | bytes, kind: str, code: str) -> None:
    async with await connect(root_url(gw)) as ws:
        answer = await ask(ws, frame)
        assert (answer["status"], answer["type"], answer["error"]) == ("error", kind, code)
        assert answer["message"]
        await assert_open(ws)


async def test_ws_keeps_the_new_protocol(gw: Supervisor) -> None:
    async with websockets.connect(root_url(gw) + "/ws") as ws:
        assert (await recv(ws))["type"] == "hello"
        answer = await ask(ws, NODE_SELECT)
        assert answer["type"] == "error" and answer["payload"]["error"] == "unknown_type"


async def test_old_messages_are_counted_by_old_type(gw: Supervisor) -> None:
    async with await connect(root_url(gw)) as ws:
        for frame in (NODE_SELECT, NODE_SELECT, {"type": "camera_update"}, "invalid json",
                      {"type": "teleport"}, {"type": {"nested": 1}}, {"no": "type"}):
            await ask(ws, frame)
    async with httpx.AsyncClient() as http:
        text = (await http.get(url_of(gw, "ecm_ws") + "/metrics")).text

    def count(operation: str) -> float:
        return metric_total(text, "bem_legacy_requests_total", service="ecm_ws",
                            operation=operation)

    assert (count("node_select"), count("camera_update"), count("invalid_json")) == (2, 1, 1)
    assert count("other") == 3  # unknown, unhashable and missing types share one label
    assert "teleport" not in text


# --- the limits of /ws hold on the root path --------------------------------------------
async def test_api_keys_guard_the_root_path_too() -> None:
    settings = make_settings(BEM_API_KEYS="s3cret")
    async with run_cluster("gateway", settings, services=["ecm_ws"]) as sup:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(root_url(sup))
        assert refused.value.response.status_code == 401
        async with await connect(root_url(sup) + "/?api_key=s3cret") as ws:
            await assert_open(ws)


async def test_message_over_the_limit_closes_with_1009_others_unaffected() -> None:
    settings = make_settings(max_ws_message_size=64 * 1024)
    async with run_cluster("gateway", settings, services=["ecm_ws"]) as sup, \
            await connect(root_url(sup)) as ws, await connect(root_url(sup)) as other:
        near = {"type": "test", "payload": "x" * (64 * 1024 - 100)}
        assert (await ask(ws, near))["status"] == "received"
        await ws.send(orjson.dumps({"type": "test", "payload": "x" * 64 * 1024}).decode())
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await assert_open(other)


async def test_a_client_that_does_not_read_stalls_only_itself(gw: Supervisor) -> None:
    """It floods receipts it never reads: its replies back up to RESPONSE_LIMIT, then the
    server stops reading it (TCP back-pressure). Others, old and new protocol, are served
    meanwhile; once it reads, it gets every receipt, in order: none is dropped."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", gw.ports["ecm_ws"]))
    sock.setblocking(False)
    slow = await connect(root_url(gw), sock=sock, max_queue=1, compression=None)
    filler = "y" * 8192
    total = 2000  # 16 MB of receipts: far more than the socket buffers hold

    async def flood() -> None:
        for i in range(total):
            await slow.send(orjson.dumps({"type": "test", "id": i, "payload": filler}).decode())

    sender = asyncio.create_task(flood())
    try:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 30
            while (await http.get(url_of(gw, "ecm_ws") + "/ws/info")).json()["queued"] < \
                    RESPONSE_LIMIT:
                assert time.monotonic() < deadline, "the slow client's receipts never backed up"
                await asyncio.sleep(0.05)
        assert not sender.done()  # the server stopped reading it
        async with await connect(root_url(gw)) as old, \
                websockets.connect(root_url(gw) + "/ws") as new:
            for i in range(20):
                assert (await ask(old, {**NODE_SELECT, "id": i}))["original_message_id"] == i
            assert (await recv(new))["type"] == "hello"
            assert (await ask(new, {"type": "ping", "id": 1}))["type"] == "pong"
        for i in range(total):
            assert (await recv(slow))["original_message_id"] == i
        await asyncio.wait_for(sender, RECV_TIMEOUT)
    finally:
        sender.cancel()
        await slow.close()


# --- pulses become events ---------------------------------------------------------------
async def test_pulse_effect_becomes_processed_events(engine: Supervisor) -> None:
    ce = url_of(engine, "callback_engine")
    async with await connect(root_url(engine)) as ws, \
            websockets.connect(root_url(engine) + "/ws") as watcher, httpx.AsyncClient() as http:
        assert (await recv(watcher))["type"] == "hello"
        await ask(watcher, {"type": "subscribe", "topic": "pulses"})
        before = (await http.get(ce + "/stats")).json()
        receipt = await ask(ws, PULSE_EFFECT)
        assert (receipt["status"], receipt["processing_status"]) == ("received", "accepted")
        assert receipt["durable"] is False and receipt["type"] == "pulse_effect"
        assert [e["node"] for e in receipt["events"]] == ["V01", "V05"]
        states = [await finished(http, ce, e["event_id"]) for e in receipt["events"]]
        for state, node in zip(states, ("V01", "V05"), strict=True):
            assert (state["status"], state["type"], state["node"]) == ("processed", "bid", node)
            assert state["magnitude"] == 0.5 and state["graph_id"] is None
            assert state["payload"] == {"legacy_type": "pulse_effect"}
            assert state["result"]["pulses"] > 0
        after = (await http.get(ce + "/stats")).json()
        assert after["processed"] - before["processed"] == 2
        # The engine's pulses reach the new protocol's subscribers.
        pulse = await recv(watcher)
        assert pulse["type"] == "pulse"
        assert pulse["payload"]["event_id"] in {e["event_id"] for e in receipt["events"]}


async def test_named_pulses_need_a_node(engine: Supervisor) -> None:
    ce = url_of(engine, "callback_engine")
    async with await connect(root_url(engine)) as ws, httpx.AsyncClient() as http:
        receipt = await ask(ws, BID_PULSE)
        [event] = receipt["events"]
        state = await finished(http, ce, event["event_id"])
        assert (state["status"], state["node"], state["magnitude"]) == ("processed", "V02", 0.8)
        assert state["payload"]["legacy_type"] == "bid_pulse"
        assert state["payload"]["legacy_payload"]["agent_id"] == "test_agent"

        refused = await ask(ws, PAGE_PULSE)
        assert (refused["status"], refused["type"], refused["http_status"]) == (
            "error", "bid_pulse", 422)
        assert refused["field"] == "payload.node_target"
        assert refused["message"].startswith("payload.node_target: a bid_pulse starts at")
        await assert_open(ws)


async def test_unknown_nodes_are_accepted_then_parked_as_failed(engine: Supervisor) -> None:
    """The event model checks nodes when it processes an event, against its graph (the
    sample project when the message names none): the old coordinator's node_42 is accepted
    and parked as failed, with the reason, after the bounded retries."""
    ce = url_of(engine, "callback_engine")
    async with await connect(root_url(engine)) as ws, httpx.AsyncClient() as http:
        receipt = await ask(ws, {**PULSE_EFFECT, "targets": ["node_42"]})
        assert receipt["processing_status"] == "accepted"
        state = await finished(http, ce, receipt["events"][0]["event_id"])
        assert (state["status"], state["attempts"]) == ("failed", MAX_ATTEMPTS)
        assert state["error"] == "node: 'node_42' is not a node of graph 'sample'"


@pytest.mark.parametrize(("message", "field", "needle"), [
    ({**PULSE_EFFECT, "pulse_type": "telepathy"}, "pulse_type", "one of bid_pulse"),
    ({**PULSE_EFFECT, "targets": []}, "targets", "non-empty list"),
    ({**PULSE_EFFECT, "targets": "V01"}, "targets", "non-empty list"),
    ({**PULSE_EFFECT, "targets": ["V01", 5]}, "targets[1]", "valid string"),
    ({**PULSE_EFFECT, "targets": ["V01", "x" * 200]}, "targets[1]", "at most 128"),
    ({**PULSE_EFFECT, "intensity": 50}, "intensity", "less than or equal to 10"),
    ({**PULSE_EFFECT, "intensity": None}, "intensity", "valid number"),
    ({"type": "decay_pulse", "payload": {"target_nodes": "V01"}}, "payload.target_nodes",
     "non-empty list"),
    ({"type": "decay_pulse", "payload": {"target_nodes": ["V01", None]}},
     "payload.target_nodes[1]", "valid string"),
    ({"type": "fit_pulse", "payload": {"node_target": "V01", "pulse_strength": -1}},
     "payload.pulse_strength", "greater than 0"),
    ({"type": "fit_pulse", "payload": {"node_target": "V01", "note": "z" * 5000}},
     "payload", "exceed the limit"),
])
async def test_bad_pulses_are_422_naming_the_old_field(
        engine: Supervisor, message: dict[str, Any], field: str, needle: str) -> None:
    ce = url_of(engine, "callback_engine")
    async with await connect(root_url(engine)) as ws, httpx.AsyncClient() as http:
        before = (await http.get(ce + "/stats")).json()["accepted"]
        answer = await ask(ws, message)
        assert (answer["status"], answer["error"], answer["http_status"]) == (
            "error", "validation_error", 422), answer
        assert answer["field"] == field and answer["message"].startswith(field + ":")
        assert needle in answer["message"]
        await assert_open(ws)
        assert (await http.get(ce + "/stats")).json()["accepted"] == before  # nothing half-in


async def test_a_burst_of_old_pulses_leaves_other_clients_unaffected(engine: Supervisor
                                                                     ) -> None:
    """One old client sends 300 pulses as fast as it can; another old client and a /ws
    client are answered meanwhile, and every pulse is processed exactly once."""
    ce = url_of(engine, "callback_engine")
    burst = 300
    async with await connect(root_url(engine)) as noisy, \
            await connect(root_url(engine)) as quiet, \
            websockets.connect(root_url(engine) + "/ws") as new, httpx.AsyncClient() as http:
        assert (await recv(new))["type"] == "hello"
        before = (await http.get(ce + "/stats")).json()

        async def send_all() -> None:
            for i in range(burst):
                await noisy.send(orjson.dumps({**PULSE_EFFECT, "id": i,
                                               "targets": ["V03"]}).decode())

        async def read_all() -> list[dict[str, Any]]:
            return [await recv(noisy) for _ in range(burst)]

        sender = asyncio.create_task(send_all())
        reader = asyncio.create_task(read_all())
        for i in range(10):
            assert (await ask(quiet, {**NODE_SELECT, "id": i}))["original_message_id"] == i
            assert (await ask(new, {"type": "ping", "id": i}))["id"] == i
        await sender
        receipts = await reader
        assert [r["original_message_id"] for r in receipts] == list(range(burst))
        assert {r["processing_status"] for r in receipts} == {"accepted"}
        ids = [r["events"][0]["event_id"] for r in receipts]
        assert len(set(ids)) == burst
        deadline = time.monotonic() + 60
        while (stats := (await http.get(ce + "/stats")).json())["processed"] - \
                before["processed"] < burst and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert stats["processed"] - before["processed"] == burst
        assert stats["accepted"] - before["accepted"] == burst
        assert (await finished(http, ce, ids[-1]))["status"] == "processed"


# --- across processes, on a real Redis ----------------------------------------------------
@pytest.mark.slow
async def test_durable_pulses_and_the_503_of_a_log_that_cannot_append(redis: RedisServer
                                                                       ) -> None:
    """optimized topology: the gateway submits to the logic process over HTTP, the log is a
    Redis stream. While Redis is down the engine cannot append: the receipt is an error
    (503, retry_after), never `received`; once Redis is back the resent pulse is accepted
    and processed."""
    with Topology(["compute", "logic", "gateway"], redis_url=redis.url) as topo:
        url = topo.url("ecm_ws").replace("http://", "ws://")
        ce = topo.url("callback_engine")
        async with await connect(url) as ws, httpx.AsyncClient() as http:
            receipt = await ask(ws, PULSE_EFFECT)
            assert receipt["processing_status"] == "accepted" and receipt["durable"] is True
            for event in receipt["events"]:
                assert (await finished(http, ce, event["event_id"]))["status"] == "processed"

            redis.stop()
            refused = await ask(ws, PULSE_EFFECT)
            assert (refused["status"], refused["error"], refused["http_status"]) == (
                "error", "service_unavailable", 503), refused
            assert refused["retry_after"] > 0 and "Redis" in refused["message"]
            assert "events" not in refused
            assert (await ask(ws, NODE_SELECT))["status"] == "received"  # relaying goes on

            redis.start()  # same port, same append-only file
            deadline = time.monotonic() + 30
            while (answer := await ask(ws, PULSE_EFFECT))["status"] != "received":
                assert answer["http_status"] == 503 and time.monotonic() < deadline, answer
                await asyncio.sleep(0.2)
            for event in answer["events"]:
                assert (await finished(http, ce, event["event_id"]))["status"] == "processed"
