"""GraphQL types of the callback engine: events in, their state, stats, and pulses out."""

from __future__ import annotations

from typing import Any

import strawberry

from bem.services.graphql.convert import jsonable
from bem.services.graphql.types import JSON


@strawberry.input(description="A pulse event entering the graph at `node`.")
class EventInput:
    idempotency_key: str = strawberry.field(
        description="the client's unique key: a resend is accepted once")
    type: str = strawberry.field(
        description="bid | occupancy | compliancy | fit | investment | decay | reject")
    node: str
    graph_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="a stored graph; null = the sample project")
    magnitude: float | None = strawberry.UNSET
    payload: JSON | None = strawberry.UNSET


@strawberry.type
class AcceptedEvent:
    event_id: strawberry.ID
    idempotency_key: str
    duplicate: bool = strawberry.field(description="the key was already accepted: this is "
                                                   "the original event, processed once")


@strawberry.type
class SubmittedEvents:
    events: list[AcceptedEvent]
    durable: bool = strawberry.field(description="false in embedded mode (no Redis)")


def submitted_from(answer: Any) -> SubmittedEvents:
    data = jsonable(answer)
    return SubmittedEvents(
        events=[AcceptedEvent(event_id=strawberry.ID(e["event_id"]),
                              idempotency_key=e["idempotency_key"], duplicate=e["duplicate"])
                for e in data["events"]],
        durable=data["durable"])


@strawberry.type(description="An accepted event and where its processing stands.")
class Event:
    event_id: strawberry.ID
    idempotency_key: str | None
    type: str | None
    node: str | None
    graph_id: strawberry.ID | None
    magnitude: float | None
    status: str = strawberry.field(description="pending | processed | failed")
    attempts: int | None
    error: str | None
    result: JSON = strawberry.field(description="routing and callback outcomes, once "
                                               "processed")


def event_from(answer: Any) -> Event:
    e = jsonable(answer)
    return Event(event_id=strawberry.ID(e["event_id"]), idempotency_key=e.get("idempotency_key"),
                 type=e.get("type"), node=e.get("node"), graph_id=e.get("graph_id"),
                 magnitude=e.get("magnitude"), status=e["status"], attempts=e.get("attempts"),
                 error=e.get("error"), result=e.get("result"))


@strawberry.type(description="A pulse reaching a node, as the callback engine publishes it.")
class Pulse:
    event_id: strawberry.ID | None
    pulse_type: str | None = strawberry.field(description="the event's type (bid, decay...)")
    source: str | None = strawberry.field(description="the node the event entered at")
    node: str | None = strawberry.field(description="the node this pulse reached")
    phase: str | None
    value: float | None = strawberry.field(description="intensity at this node (1 = nominal)")
    hop: int | None
    graph_id: strawberry.ID | None
    data: JSON = strawberry.field(description="the whole message as published")


def pulse_from(message: dict[str, Any]) -> Pulse:
    def get(key: str, kind: type) -> Any:
        value = message.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    return Pulse(event_id=get("event_id", str), pulse_type=get("pulse_type", str),
                 source=get("source", str), node=get("node", str), phase=get("phase", str),
                 value=get("value", int | float), hop=get("hop", int),
                 graph_id=get("graph_id", str), data=message)
