"""Connections, topics and fan-out of the ECM WebSocket.

Each connection has one writer task and an outbox with two lanes:
- replies (hello, ack, pong, error...) are never dropped: when RESPONSE_LIMIT of them are
  waiting, the connection's reader stops reading until the client catches up (TCP
  back-pressure on that client alone);
- pushes (pulse, graph, health) are bounded at QUEUE_LIMIT: a client that reads too slowly
  loses its OLDEST pushes, and before the next push it receives
  `{"type": "dropped", "payload": {"count", "total"}}`.
Fan-out only appends to outboxes, so one slow or stuck client never delays the others. A
client that stops reading altogether also stops answering the protocol pings (every 20 s)
and is disconnected by the server when the pong is 20 s late.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from bem.gateway import Gateway
from bem.services.ecm_ws import protocol

if TYPE_CHECKING:
    from bem.runtime.runtime import ServiceContext

log = logging.getLogger("bem.ecm_ws")

QUEUE_LIMIT = 256  # pushes waiting per connection before the oldest are dropped
RESPONSE_LIMIT = 64  # replies waiting per connection before its reader pauses
HEALTH_POLL = 2.0  # seconds between platform health polls while anyone subscribes
BUS_QUEUE = 10_000  # the relay's own bus subscription (it drains at once into outboxes)


class Outbox:
    """Messages waiting for one client's writer. See the module docstring."""

    def __init__(self, limit: int = QUEUE_LIMIT, reply_limit: int = RESPONSE_LIMIT) -> None:
        self.limit = limit
        self.reply_limit = reply_limit
        self._replies: deque[str] = deque()
        self._pushes: deque[str] = deque()
        self.dropped = 0
        self._unreported = 0
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._replies) + len(self._pushes)

    def push(self, message: str) -> None:
        if len(self._pushes) >= self.limit:
            self._pushes.popleft()
            self.dropped += 1
            self._unreported += 1
        self._pushes.append(message)
        self._ready.set()

    async def reply(self, message: str) -> None:
        while len(self._replies) >= self.reply_limit:
            self._space.clear()
            await self._space.wait()
        self._replies.append(message)
        self._ready.set()

    async def next(self, timeout: float | None) -> str | None:
        """The next message to write, or None after `timeout` seconds with nothing to send
        (None: wait for one as long as it takes)."""
        while True:
            if self._replies:
                self._space.set()
                return self._replies.popleft()
            if self._unreported:
                count, self._unreported = self._unreported, 0
                return protocol.dropped(count, self.dropped)
            if self._pushes:
                return self._pushes.popleft()
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None


class Connection:
    _ids = itertools.count(1)

    def __init__(self, ws: WebSocket, hub: Hub, heartbeat: float | None) -> None:
        self.id = next(self._ids)
        self.ws = ws
        self.hub = hub
        self.heartbeat = heartbeat
        self.topics: set[str] = set()
        self.outbox = Outbox()

    async def write_loop(self) -> None:
        """Write queued messages in order; a heartbeat after `heartbeat` quiet seconds
        (None: never, the old relay protocol has no heartbeat message)."""
        try:
            while True:
                message = await self.outbox.next(self.heartbeat)
                if message is None:
                    message = protocol.heartbeat(len(self.hub.connections))
                await self.ws.send_text(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client is gone; the reader sees the disconnect and cleans up


class Hub:
    """Every connection of the service and who subscribes to what."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.connections: set[Connection] = set()
        self.subscribers: dict[str, set[Connection]] = {t: set() for t in protocol.TOPICS}
        self.dropped_closed = 0  # pushes dropped by connections already closed
        self.last_health: dict[str, Any] | None = None
        self._health_wakeup = asyncio.Event()
        m = ctx.runtime.metrics
        self._gauge = m.ws_connections.labels(ctx.name, m.cluster)

    def open(self, ws: WebSocket, heartbeat: float | None) -> Connection:
        conn = Connection(ws, self, heartbeat)
        self.connections.add(conn)
        self._gauge.inc()
        return conn

    def close(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._gauge.dec()
            self.dropped_closed += conn.outbox.dropped
        for topic in conn.topics:
            self.subscribers[topic].discard(conn)
        if not self.subscribers["health"]:
            self.last_health = None  # nobody watches: the next subscriber gets a fresh poll

    def subscribe(self, conn: Connection, topic: str) -> None:
        conn.topics.add(topic)
        self.subscribers[topic].add(conn)
        if topic == "health":
            if self.last_health is not None:
                conn.outbox.push(protocol.push("health", self.last_health))
            else:
                self._health_wakeup.set()

    def unsubscribe(self, conn: Connection, topic: str) -> None:
        conn.topics.discard(topic)
        self.subscribers[topic].discard(conn)
        if topic == "health" and not self.subscribers["health"]:
            self.last_health = None

    def publish(self, topic: str, payload: Any) -> None:
        """Queue a push for every subscriber of `topic` (encoded once, never blocks)."""
        subscribers = self.subscribers[topic]
        if subscribers:
            message = protocol.push(topic, payload)
            for conn in subscribers:
                conn.outbox.push(message)

    def info(self) -> dict[str, Any]:
        return {"connections": len(self.connections),
                "subscribers": {t: len(s) for t, s in self.subscribers.items()},
                "queued": sum(len(c.outbox) for c in self.connections),
                "dropped": self.dropped_closed + sum(c.outbox.dropped for c in self.connections)}

    # --- background feeds (started by the service's lifespan) ---------------------------
    async def relay(self, bus_topic: str, topic: str) -> None:
        """Forward every message of a bus topic to the subscribers of a WebSocket topic."""
        with self.ctx.runtime.bus.subscribe(bus_topic, maxsize=BUS_QUEUE) as sub:
            async for message in sub:
                self.publish(topic, message)

    async def watch_health(self) -> None:
        """While anyone subscribes to `health`, poll the platform and push each change."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._health_wakeup.wait(), HEALTH_POLL)
            self._health_wakeup.clear()
            if not self.subscribers["health"]:
                continue
            try:
                report = await Gateway.of(self.ctx.runtime).collector.collect()
            except Exception:  # a bug here must not end the feed for good
                log.exception("health poll failed")
                continue
            summary = health_summary(report)
            if self.subscribers["health"] and summary != self.last_health:
                self.last_health = summary
                self.publish("health", summary)


def health_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a `health` push carries: statuses only, so it changes only when one changes."""
    return {"status": report["status"], "source": report["source"],
            "clusters": {name: {"status": c["status"], "replicas": len(c["replicas"]),
                                "missing": c["missing"]}
                         for name, c in report["clusters"].items()},
            "services": {name: s["status"] for name, s in report["services"].items()}}
