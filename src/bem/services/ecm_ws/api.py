"""ecm_ws (8765): the real-time WebSocket channel at `/ws`, and the old relay at `/`.

Clients of `/ws` subscribe to topics (`pulses` from the callback engine, `graph` from
graph_runtime, `health` of the whole platform) and submit pulse events; the message protocol
is in protocol.py, connections and fan-out in hub.py, operator notes in
docs/realtime-and-dashboard.md. The old platform's clients keep `ws://HOST:8765/`: its relay
protocol is in legacy.py (docs/migration.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, Field

from bem.errors import BemError
from bem.gateway import Gateway
from bem.gateway.access import install_access
from bem.runtime.runtime import Ctx, ServiceContext
from bem.runtime.service import ServiceSpec
from bem.runtime.tracing import traced_handler
from bem.services.ecm_ws import legacy, protocol
from bem.services.ecm_ws.hub import QUEUE_LIMIT, Connection, Hub

PATH = "/ws"
HEARTBEAT = 15.0  # seconds of silence after which the server sends a heartbeat message
HEARTBEAT_RANGE = (1.0, 300.0)  # what a client may ask for with ?heartbeat=

service = ServiceSpec(
    name="ecm_ws",
    title="BEM ECM WebSocket",
    description=(
        f"Real-time channel at `{PATH}` (WebSocket, JSON text frames "
        "`{type, id, topic, payload}`): subscribe to `pulses`, `graph` and `health`, submit "
        "pulse events to the callback engine (answered with an `ack` carrying the event id), "
        "`ping` -> `pong`. Bad messages get an `error` message and the connection stays "
        "open; messages over MAX_WS_MESSAGE_SIZE close it with code 1009; idle clients get "
        f"`heartbeat` messages (every {HEARTBEAT:g} s, `?heartbeat=` to change); a slow client "
        f"loses its oldest pushes beyond {QUEUE_LIMIT} and is told so with a `dropped` message. "
        "Browsers pass the API key as `?api_key=`. The root path `/` keeps the old "
        "platform's relay protocol for its clients (a `connection_established` welcome, a "
        "`status: \"received\"` receipt per message, pulse messages submitted to the "
        "callback engine; see docs/migration.md)."),
    subscribes=True,
)


class WsInfo(BaseModel):
    path: str = Field(description="the WebSocket endpoint")
    legacy_path: str = Field(description="the old platform's relay protocol (its clients only)")
    connections: int
    subscribers: dict[str, int] = Field(description="connections per topic")
    queued: int = Field(description="messages waiting in every connection's outbox")
    dropped: int = Field(description="pushes dropped for slow clients since start")
    queue_limit: int = Field(description="pushes kept per connection before dropping the oldest")
    max_message_size: int = Field(description="bytes; a bigger message closes with 1009")
    heartbeat_s: float = Field(description="default quiet period before a heartbeat message")
    topics: list[str]
    message_types: list[str] = Field(description="what a client may send")


def _hub(ctx: ServiceContext) -> Hub:
    return ctx.state["hub"]  # type: ignore[no-any-return]


@service.lifespan
async def _lifespan(ctx: ServiceContext) -> AsyncIterator[None]:
    hub = ctx.state["hub"] = Hub(ctx)
    tasks = [asyncio.create_task(hub.relay("pulses", "pulses"), name="ws-pulses"),
             asyncio.create_task(hub.relay("graph", "graph"), name="ws-graph"),
             asyncio.create_task(hub.watch_health(), name="ws-health")]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@service.health_check
def _health(ctx: ServiceContext) -> dict[str, dict[str, Any]]:
    hub = ctx.state.get("hub")
    if hub is None:
        return {}
    checks = {"websocket:connections": {"status": "pass", "observedValue": len(hub.connections),
                                        "observedUnit": "connections"}}
    bus = ctx.runtime.bus
    if ctx.runtime.redis.configured and not bus.listening.is_set():
        checks["bus:subscription"] = {"status": "warn", "output": "not subscribed to the Redis "
                                      "pulse channel; pushes resume when Redis is back"}
    return checks


@service.operation("GET", f"{PATH}/info")
async def ws_info(ctx: Ctx) -> WsInfo:
    """Connection counts, subscribers per topic and the channel's limits."""
    return WsInfo(path=PATH, legacy_path=legacy.PATH, queue_limit=QUEUE_LIMIT,
                  max_message_size=ctx.settings.max_ws_message_size, heartbeat_s=HEARTBEAT,
                  topics=list(protocol.TOPICS), message_types=list(protocol.CLIENT_TYPES),
                  **_hub(ctx).info())


async def submit_event(ctx: ServiceContext, msg: protocol.ClientMessage) -> str:
    """Hand one event to the callback engine: an `ack`, or an `error` with its 4xx/5xx."""
    # a peer: imported on the first call, not at start-up
    from bem.services.callback_engine.api import submit_events
    try:
        result = await ctx.call(submit_events, {"events": [msg.payload]})
    except BemError as exc:
        message = exc.message.replace("events[0].", "payload.").replace("events[0]", "payload")
        return protocol.error(exc.code, message, field=protocol.event_field(exc.field),
                              msg_id=msg.id, status=exc.status)
    data = _plain(result)
    return protocol.reply("ack", msg.id, payload={**data["events"][0],
                                                  "durable": data.get("durable")})


def _plain(result: Any) -> dict[str, Any]:
    """An answer of the service client: a model in-process, JSON from a remote peer."""
    return result.model_dump(mode="json") if isinstance(result, BaseModel) else dict(result)


async def handle(ctx: ServiceContext, conn: Connection, frame: Mapping[str, Any]) -> None:
    """Act on one client message; every outcome, errors included, is a reply."""
    hub = conn.hub
    try:
        msg = protocol.parse(frame.get("text"))
    except protocol.ProtocolError as exc:
        await conn.outbox.reply(exc.to_message())
        return
    if msg.type == "ping":
        await conn.outbox.reply(protocol.reply("pong", msg.id, payload=msg.payload))
    elif msg.type == "event":
        await conn.outbox.reply(await submit_event(ctx, msg))
    elif msg.type == "subscribe":
        await conn.outbox.reply(protocol.reply("subscribed", msg.id, topic=msg.topic))
        hub.subscribe(conn, str(msg.topic))
    else:
        hub.unsubscribe(conn, str(msg.topic))
        await conn.outbox.reply(protocol.reply("unsubscribed", msg.id, topic=msg.topic))


def heartbeat_of(ws: WebSocket) -> float:
    raw = ws.query_params.get("heartbeat")
    if raw is None:
        return HEARTBEAT
    low, high = HEARTBEAT_RANGE
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise protocol.ProtocolError(
            "validation_error", f"heartbeat: must be a number of seconds in [{low:g}, "
                                f"{high:g}], got {raw!r}", field="heartbeat")
    return value


async def answer_legacy(ctx: ServiceContext, msg: legacy.OldMessage) -> str:
    """The receipt of an old message; one carrying a pulse is submitted first."""
    # a peer: imported on the first call, not at start-up
    from bem.services.callback_engine.api import submit_events
    try:
        pulse = legacy.pulse_of(msg)
    except BemError as exc:
        return legacy.refused(msg, exc)
    if pulse is None:
        return legacy.received(msg)
    try:
        result = await ctx.call(submit_events, {"events": pulse.events})
    except BemError as exc:  # not appended (a 503 while the log is down): not "received"
        return legacy.refused(msg, exc, pulse)
    return legacy.accepted(msg, _plain(result), pulse)


async def handle_legacy(ctx: ServiceContext, conn: Connection, frame: Mapping[str, Any]
                        ) -> None:
    """Answer one message of the old relay protocol, counting it by its old type."""
    m = ctx.runtime.metrics
    text = frame.get("text")
    try:
        msg = legacy.parse(text if text is not None else frame.get("bytes") or b"")
    except protocol.ProtocolError as exc:
        m.legacy_requests.labels(ctx.name, m.cluster, legacy.operation_of(exc)).inc()
        await conn.outbox.reply(legacy.parse_error(exc))
        return
    m.legacy_requests.labels(ctx.name, m.cluster, msg.operation).inc()
    await conn.outbox.reply(await answer_legacy(ctx, msg))


Handler = Callable[[ServiceContext, Connection, Mapping[str, Any]], Awaitable[None]]


async def serve(ctx: ServiceContext, ws: WebSocket) -> None:
    """The protocol of `/ws`."""
    await ws.accept()
    try:
        heartbeat = heartbeat_of(ws)
    except protocol.ProtocolError as exc:
        await ws.send_text(exc.to_message())
        await ws.close(code=1008, reason=exc.message[:120])
        return

    def hello(conn: Connection) -> str:
        return protocol.reply("hello", None, payload={
            "connection": conn.id, "topics": list(protocol.TOPICS), "heartbeat_s": heartbeat,
            "max_message_size": ctx.settings.max_ws_message_size, "queue_limit": QUEUE_LIMIT})

    await converse(ctx, ws, heartbeat, hello, handle)


async def serve_legacy(ctx: ServiceContext, ws: WebSocket) -> None:
    """The old relay protocol of `/` (no heartbeat messages: its clients do not know them;
    uvicorn's protocol pings still detect dead peers)."""
    await ws.accept()
    await converse(ctx, ws, None, lambda _conn: legacy.welcome(), handle_legacy)


async def converse(ctx: ServiceContext, ws: WebSocket, heartbeat: float | None,
                   hello: Callable[[Connection], str], handler: Handler) -> None:
    """One accepted connection: its greeting, then each message in order, answered through
    the connection's outbox (hub.py: one writer, replies never dropped)."""
    hub = _hub(ctx)
    handler = traced_handler(ctx, handler)
    conn = hub.open(ws, heartbeat)
    writer = asyncio.create_task(conn.write_loop(), name=f"ws-writer-{conn.id}")
    try:
        await conn.outbox.reply(hello(conn))
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            await handler(ctx, conn, message)
    finally:
        hub.close(conn)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


@service.setup
def _setup(app: FastAPI, ctx: ServiceContext) -> None:
    install_access(app, ctx.settings, Gateway.of(ctx.runtime).buckets)

    @app.websocket(PATH)
    async def websocket(ws: WebSocket) -> None:
        await serve(ctx, ws)

    @app.websocket(legacy.PATH)
    async def legacy_websocket(ws: WebSocket) -> None:
        await serve_legacy(ctx, ws)
