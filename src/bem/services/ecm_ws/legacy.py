"""The old platform's ECM relay protocol, kept on `ws://HOST:8765/` (the root path).

The old ECM gateway (Cideation/Endpoint `Final_Phase/ecm_gateway.py`) took free-form JSON
messages `{type, payload?, id?, timestamp?, ...}` and answered each with a receipt; its
clients (`debug_websocket.py`, the agent console and phase tests, the interaction flow
coordinator, the semantic pulse page) read those receipts. Kept here:

- on connect, `{"type": "connection_established", "status": "received", "message", ...}`;
- each message: `{"status": "received", "type": <its type>, "echo": <its payload>,
  "original_message_id": <its id>, "processing_status", "timestamp"}`;
- invalid JSON: `{"status": "error", "type": "json_parse_error", "error", "message"}`;
  the connection stays open.

What changed in substance: the old relay only echoed, while here a message that carries a
pulse becomes pulse events of the callback engine (`processing_status: "accepted"` with
their event ids), or an error receipt when the message lacks what an event needs or the
engine refuses it (the pulse was not accepted: resend it). Every other message is relayed
(`processing_status: "relayed"`), as before. docs/migration.md maps each old message to its
new form.

Pure functions only: the connection handling is in api.py and hub.py.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from bem.errors import BemError, ValidationFailed
from bem.services.ecm_ws.protocol import ProtocolError, encode

PATH = "/"
WELCOME = "ECM Gateway ready"

# Old pulse names (the message types of the semantic pulse page and the agent console, the
# coordinator's `pulse_type` values) -> the callback engine's pulse types.
PULSE_NAMES = {"bid_pulse": "bid", "occupancy_pulse": "occupancy",
               "compliancy_pulse": "compliancy", "compliance_pulse": "compliancy",
               "fit_pulse": "fit", "investment_pulse": "investment", "decay_pulse": "decay",
               "reject_pulse": "reject"}
PULSE_EFFECT = "pulse_effect"

# The message types the old clients send, each counted under its own name in
# bem_legacy_requests_total; anything else is counted as OTHER, so that clients cannot
# create series.
KNOWN_TYPES = frozenset({"test", "system_test", "test_message", "ping", "coordination_test",
                         "connectivity_test", "node_select", "camera_update", "agent_action",
                         PULSE_EFFECT, *PULSE_NAMES})
OTHER = "other"
INVALID_JSON = "invalid_json"


@dataclass(frozen=True)
class OldMessage:
    type: Any  # as sent; "unknown" when absent, the name the old gateway answered with
    id: Any  # echoed as `original_message_id`
    payload: Any  # echoed as `echo`; {} when absent
    fields: dict[str, Any]  # the whole message: pulse_effect's fields are top-level

    @property
    def operation(self) -> str:
        """The metric label of its type."""
        return self.type if isinstance(self.type, str) and self.type in KNOWN_TYPES else OTHER


def parse(data: str | bytes) -> OldMessage:
    """An old message from a text or binary frame (the old server parsed both as JSON)."""
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"Invalid JSON format: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", "a message is a JSON object "
                                           "{type, payload, id, timestamp}")
    return OldMessage(type=msg.get("type", "unknown"), id=msg.get("id"),
                      payload=msg.get("payload", {}), fields=msg)


def operation_of(exc: ProtocolError) -> str:
    """The metric label of a frame that is no old message."""
    return INVALID_JSON if exc.code == "bad_json" else OTHER


# --- pulses ------------------------------------------------------------------------------
_EVENT_FIELD = re.compile(r"^events(?:\[(\d+)\](?:\.(\w+))?)?")


@dataclass(frozen=True)
class Pulse:
    """The events an old message carries, and which old field each event field came from
    (so that the engine's errors name what the client sent)."""

    events: list[dict[str, Any]]
    names: dict[str, str]  # event field -> old field; "{i}" is the event's index

    def old_field(self, field: str | None) -> str | None:
        """`events[2].node` -> `targets[2]`; `events` -> `targets`."""
        match = _EVENT_FIELD.match(field) if field else None
        if field is None or match is None:
            return field
        index, name = match.groups()
        if name is None:
            return self.names["events"]
        return self.names.get(name, name).format(i=index) + field[match.end():]

    def old_message(self, message: str, field: str | None) -> str:
        old = self.old_field(field)
        if field and old and message.startswith(field):
            return old + message[len(field):]
        return message


def pulse_of(msg: OldMessage) -> Pulse | None:
    """The pulse an old message carries (None: it carries none, it is only relayed).
    ValidationFailed names the old field when a pulse message lacks what an event needs."""
    if msg.type == PULSE_EFFECT:
        return _pulse_effect(msg.fields)
    if isinstance(msg.type, str) and msg.type in PULSE_NAMES:
        return _named_pulse(msg.type, msg.payload)
    return None


def _pulse_effect(fields: dict[str, Any]) -> Pulse:
    """neon/interaction_flow_coordinator.py: `{type: "pulse_effect", pulse_type, targets,
    intensity, timestamp}`, one pulse starting at each target."""
    name = fields.get("pulse_type")
    if not isinstance(name, str) or name not in PULSE_NAMES:
        raise ValidationFailed(f"pulse_type: required for {PULSE_EFFECT}, one of "
                               f"{', '.join(PULSE_NAMES)} (got {name!r})", field="pulse_type")
    targets = fields.get("targets")
    if not isinstance(targets, list) or not targets:
        raise ValidationFailed(f"targets: required for {PULSE_EFFECT}: the nodes the pulse "
                               f"starts at, a non-empty list of node ids such as [\"V01\"]",
                               field="targets")
    events = _events(PULSE_NAMES[name], targets, fields.get("intensity", 1.0),
                     {"legacy_type": PULSE_EFFECT})
    return Pulse(events, {"events": "targets", "node": "targets[{i}]", "type": "pulse_type",
                          "magnitude": "intensity", "payload": "payload"})


def _named_pulse(name: str, payload: Any) -> Pulse:
    """A `<kind>_pulse` message (frontend/semantic_pulse_interface.html, and the agent
    console's pulses): its nodes are `payload.node_target` or `payload.target_nodes`."""
    body = payload if isinstance(payload, dict) else {}
    if "target_nodes" in body:
        nodes, where = body["target_nodes"], "payload.target_nodes"
        if not isinstance(nodes, list) or not nodes:
            raise ValidationFailed(f"{where}: must be a non-empty list of node ids",
                                   field=where)
        node_name = where + "[{i}]"
    elif "node_target" in body:
        nodes, where = [body["node_target"]], "payload.node_target"
        node_name = where
    else:
        raise ValidationFailed(
            f"payload.node_target: a {name} starts at a node of the project graph: send "
            f"payload.node_target (a node id such as \"V01\") or payload.target_nodes (a "
            f"list); without one it cannot become a pulse event", field="payload.node_target")
    meta = {"legacy_type": name, "legacy_payload": body}
    events = _events(PULSE_NAMES[name], nodes, body.get("pulse_strength", 1.0), meta)
    return Pulse(events, {"events": where, "node": node_name, "type": "type",
                          "magnitude": "payload.pulse_strength", "payload": "payload"})


def _events(kind: str, nodes: list[Any], magnitude: Any, meta: dict[str, Any]
            ) -> list[dict[str, Any]]:
    # The old protocol has no idempotency key: each message is a new pulse (graph_id null:
    # the sample project, the engine's default). The engine validates nodes and magnitude.
    key = f"ecm-legacy:{uuid.uuid4().hex}"
    return [{"idempotency_key": f"{key}:{i}", "type": kind, "node": node,
             "magnitude": magnitude, "payload": meta} for i, node in enumerate(nodes)]


# --- what the server sends -----------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def welcome() -> str:
    # "received", not the old gateway's "connected": tests/test_phase3_production.py and
    # tests/test_recent_commits.py read the first message after their first send as its
    # receipt and check status == "received" (they were written against a relay without a
    # welcome), while tests/test_phase1_implementation.py reads a welcome first; a welcome
    # that is itself a receipt serves both. No old client reads "connected".
    return encode({"type": "connection_established", "timestamp": _now(),
                   "status": "received", "message": WELCOME})


def received(msg: OldMessage) -> str:
    """The receipt of a message relayed as it was (no pulse in it)."""
    return encode(_receipt(msg, "relayed"))


def accepted(msg: OldMessage, answer: dict[str, Any], pulse: Pulse) -> str:
    """The receipt of a pulse message: the events the callback engine accepted."""
    events = [{**a, "node": e["node"]}
              for a, e in zip(answer["events"], pulse.events, strict=True)]
    return encode({**_receipt(msg, "accepted"), "events": events,
                   "durable": answer.get("durable")})


def _receipt(msg: OldMessage, processing_status: str) -> dict[str, Any]:
    return {"timestamp": _now(), "status": "received", "echo": msg.payload, "type": msg.type,
            "original_message_id": msg.id, "processing_status": processing_status}


def refused(msg: OldMessage, exc: BemError, pulse: Pulse | None = None) -> str:
    """The error receipt of a pulse that was not accepted (the client may resend it)."""
    field = pulse.old_field(exc.field) if pulse else exc.field
    message = pulse.old_message(exc.message, exc.field) if pulse else exc.message
    body: dict[str, Any] = {"timestamp": _now(), "status": "error", "type": msg.type,
                            "original_message_id": msg.id, "error": exc.code,
                            "message": message, "http_status": exc.status}
    if field:
        body["field"] = field
    retry = exc.headers.get("Retry-After")
    if retry is not None:
        body["retry_after"] = float(retry)
    return encode(body)


def parse_error(exc: ProtocolError) -> str:
    """The error receipt of a frame that is no message (old types: json_parse_error for
    invalid JSON, processing_error otherwise)."""
    kind = "json_parse_error" if exc.code == "bad_json" else "processing_error"
    return encode({"timestamp": _now(), "status": "error", "type": kind, "error": exc.code,
                   "message": exc.message})
