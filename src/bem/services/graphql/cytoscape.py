"""`ws://HOST:8000/ws/cytoscape`: the old platform's live stream for its Cytoscape consoles.

The old server relayed its Redis channels `pulse_events` and `graph_updates` as they were,
one JSON text frame per message, and never read what the client sent. Here the same stream
comes from the pulse bus: every pulse the callback engine publishes as an old pulse event
(with the `type: "pulse_event"` the old agent console dispatches on), every graph change as
the old `graph_updates` messages. Client frames are read and ignored (the old server ignored
them too); the connection stays open until the client leaves. Each connection counts once in
`bem_legacy_requests_total{operation="ws/cytoscape"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from bem.runtime.bus import Subscription
from bem.runtime.runtime import ServiceContext
from bem.services.graphql.legacy import GRAPH_TOPIC, PULSE_TOPIC, SERVICE
from bem.services.graphql.legacy_types import (
    old_graph_messages,
    old_pulse_message,
    pulse_event_from_pulse,
)

PATH = "/ws/cytoscape"
OPERATION = "ws/cytoscape"


def old_messages(topic: str, message: dict[str, Any]) -> list[dict[str, Any]]:
    """What the old server would have relayed for one bus message."""
    if topic == GRAPH_TOPIC:
        return old_graph_messages(message)
    event = pulse_event_from_pulse(message)
    return [] if event is None else [old_pulse_message(event)]


async def _relay(ws: WebSocket, pulses: Subscription, graph: Subscription) -> None:
    """Both topics, in arrival order, to one socket (one sender: frames never interleave)."""
    waiting = {asyncio.ensure_future(sub.get()): sub for sub in (pulses, graph)}
    try:
        while True:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                sub = waiting.pop(task)
                for old in old_messages(sub.topic, task.result()):
                    await ws.send_json(old)
                waiting[asyncio.ensure_future(sub.get())] = sub
    finally:
        for task in waiting:
            task.cancel()


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) client frames until the client leaves."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()


def install(app: FastAPI, ctx: ServiceContext) -> None:
    metrics = ctx.runtime.metrics
    connections = metrics.ws_connections.labels(ctx.name, metrics.cluster)
    legacy = metrics.legacy_requests.labels(SERVICE, metrics.cluster, OPERATION)

    @app.websocket(PATH)
    async def cytoscape(ws: WebSocket) -> None:
        bus = ctx.runtime.bus
        # Subscribed before the handshake completes: a client that triggers a pulse once it
        # is connected receives it.
        with bus.subscribe(PULSE_TOPIC) as pulses, bus.subscribe(GRAPH_TOPIC) as graph:
            await ws.accept()
            legacy.inc()
            connections.inc()
            relay = asyncio.ensure_future(_relay(ws, pulses, graph))
            drain = asyncio.ensure_future(_drain(ws))
            try:
                await asyncio.wait({relay, drain}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                connections.dec()
                for task in (relay, drain):
                    task.cancel()
                results = await asyncio.gather(relay, drain, return_exceptions=True)
            for result in results:  # a closed socket ends the relay: that is no error
                if isinstance(result, Exception) and not isinstance(
                        result, WebSocketDisconnect | RuntimeError | OSError):
                    raise result
