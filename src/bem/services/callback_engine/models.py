"""Request and response models of callback_engine."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

PulseType = Literal["bid", "occupancy", "compliancy", "fit", "investment", "decay", "reject"]
EventStatus = Literal["pending", "processed", "failed"]

MAX_EVENTS_PER_REQUEST = 1000
MAX_PAYLOAD_BYTES = 4096  # payloads are metadata stored with the event, not data


class PulseEvent(BaseModel):
    """One pulse entering the project graph at `node`."""

    model_config = ConfigDict(extra="forbid")

    idempotency_key: str = Field(min_length=1, max_length=128,
                                 description="the client's unique key: a resend is accepted "
                                             "once and answers the original event_id")
    type: PulseType
    node: str = Field(min_length=1, max_length=128, description="the node the pulse starts at")
    graph_id: str | None = Field(None, min_length=1, max_length=64,
                                 description="a stored graph; null = the sample project")
    magnitude: float = Field(1.0, gt=0, le=10, allow_inf_nan=False,
                             description="relative intensity at the origin (1 = nominal)")
    payload: dict[str, Any] = Field(default_factory=dict,
                                    description=f"client metadata kept with the event "
                                                f"(at most {MAX_PAYLOAD_BYTES} bytes of JSON)")

    @field_validator("payload")
    @classmethod
    def _small_payload(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(orjson.dumps(value))
        except TypeError as exc:  # in-process callers may pass non-JSON values
            raise ValueError(f"not JSON-serialisable: {exc}") from None
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"{size} bytes of JSON exceed the limit of {MAX_PAYLOAD_BYTES}")
        return value


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[PulseEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class Accepted(BaseModel):
    event_id: str
    idempotency_key: str
    duplicate: bool = Field(description="true when the key was already accepted: the "
                                        "original event_id, processed once")


class SubmitAnswer(BaseModel):
    events: list[Accepted]
    durable: bool = Field(description="false in embedded mode: the log lives in the process")


class EventState(BaseModel):
    event_id: str
    idempotency_key: str
    type: PulseType
    node: str
    graph_id: str | None
    magnitude: float
    payload: dict[str, Any] = {}
    accepted_at: float = Field(description="epoch seconds")
    status: EventStatus
    attempts: int = Field(description="processing attempts so far (failed ones included)")
    result: dict[str, Any] | None = None
    error: str | None = Field(None, description="why the last attempt failed")
    finished_at: float | None = Field(None, description="epoch seconds; null while pending")


class Stats(BaseModel):
    backend: Literal["redis", "memory"]
    durable: bool
    depth: int = Field(description="accepted events not yet processed or parked")
    lag: int = Field(description="accepted events no consumer has read yet")
    pending: int = Field(description="events read by a consumer, not yet finished "
                                     "(being processed or waiting for a retry)")
    lag_seconds: float = Field(description="age of the oldest unfinished event")
    accepted: int
    duplicates: int = Field(description="resent idempotency keys answered with the original")
    processed: int
    failed: int = Field(description="events parked as failed after the bounded retries")
    batch_size: int
    max_attempts: int


MAX_RECENT = 1000  # events answered by one GET /events


class RecentEvents(BaseModel):
    events: list[EventState] = Field(description="most recently finished first")
