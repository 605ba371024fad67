"""The ECM WebSocket message protocol: parsing client messages, building server messages.

Every message is one JSON object in a text frame: `{type, id, topic, payload}`.

Client -> server:
    subscribe    {topic}      start receiving pushes of a topic      -> subscribed
    unsubscribe  {topic}      stop                                   -> unsubscribed
    event        {payload}    one pulse event for the callback engine -> ack | error
    ping         {payload?}   liveness / round trip                  -> pong (payload echoed)
`id` (string or integer, optional) is echoed in the answer so clients can match them.

Server -> client: hello (on connect), the answers above, error, heartbeat (after a quiet
period), dropped (this connection fell behind and lost pushes), and the pushes
pulse (topic pulses), graph (topic graph) and health (topic health).

Pure functions only: the transport lives in hub.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

TOPICS = ("pulses", "graph", "health")
PUSH_TYPE = {"pulses": "pulse", "graph": "graph", "health": "health"}
CLIENT_TYPES = ("subscribe", "unsubscribe", "event", "ping")
_NEEDS_TOPIC = ("subscribe", "unsubscribe")


class ProtocolError(Exception):
    """A client message the server cannot act on; answered with an `error` message."""

    def __init__(self, code: str, message: str, *, field: str | None = None,
                 msg_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.msg_id = msg_id

    def to_message(self) -> str:
        return error(self.code, self.message, field=self.field, msg_id=self.msg_id)


@dataclass(frozen=True)
class ClientMessage:
    type: str
    id: str | int | None
    topic: str | None
    payload: Any


def _invalid(field: str, message: str, msg_id: str | int | None = None) -> ProtocolError:
    return ProtocolError("validation_error", f"{field}: {message}", field=field, msg_id=msg_id)


def parse(text: str | None) -> ClientMessage:
    """A validated client message from a text frame (None for a binary frame)."""
    if text is None:
        raise ProtocolError("bad_frame", "binary frames are not supported: send each message "
                                         "as JSON in a text frame")
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"malformed JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", "a message is a JSON object "
                                           "{type, id, topic, payload}")
    msg_id = msg.get("id")
    if msg_id is not None and (isinstance(msg_id, bool) or not isinstance(msg_id, str | int)):
        raise _invalid("id", "must be a string or an integer")
    kind = msg.get("type")
    known = ", ".join(CLIENT_TYPES)
    if kind is None:
        raise _invalid("type", f"required (one of {known})", msg_id)
    if kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"type: unknown message type {kind!r} "
                                            f"(known: {known})", field="type", msg_id=msg_id)
    topic, payload = msg.get("topic"), msg.get("payload")
    if kind in _NEEDS_TOPIC:
        topics = ", ".join(TOPICS)
        if topic is None:
            raise _invalid("topic", f"required for {kind} (one of {topics})", msg_id)
        if topic not in TOPICS:
            raise _invalid("topic", f"unknown topic {topic!r} (known: {topics})", msg_id)
    if kind == "event":
        if payload is None:
            raise _invalid("payload", "required for event: one pulse event {idempotency_key, "
                                      "type, node, graph_id, magnitude, payload}", msg_id)
        if not isinstance(payload, dict):
            raise _invalid("payload", "must be an object (one pulse event)", msg_id)
    return ClientMessage(type=kind, id=msg_id, topic=topic, payload=payload)


def encode(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


def reply(kind: str, msg_id: str | int | None, *, topic: str | None = None,
          payload: Any = None) -> str:
    message: dict[str, Any] = {"type": kind}
    if msg_id is not None:
        message["id"] = msg_id
    if topic is not None:
        message["topic"] = topic
    if payload is not None:
        message["payload"] = payload
    return encode(message)


def error(code: str, message: str, *, field: str | None = None,
          msg_id: str | int | None = None, status: int | None = None) -> str:
    """`payload` has the HTTP error body's shape: {error, message, field?, status?}."""
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    if status is not None:
        body["status"] = status
    return reply("error", msg_id, payload=body)


def push(topic: str, payload: Any) -> str:
    return encode({"type": PUSH_TYPE[topic], "topic": topic, "payload": payload})


def heartbeat(connections: int) -> str:
    return encode({"type": "heartbeat", "payload": {"time": round(time.time(), 3),
                                                    "connections": connections}})


def dropped(count: int, total: int) -> str:
    return encode({"type": "dropped", "payload": {"count": count, "total": total}})


def event_field(field: str | None) -> str | None:
    """The callback engine names `events[0].node`; the client sent it as `payload.node`."""
    if field is None:
        return None
    if field == "events[0]" or field == "events":
        return "payload"
    return field.replace("events[0].", "payload.", 1)
