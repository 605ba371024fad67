"""callback_engine's old `/process` payloads: each old callback a pulse event in the durable log.

- `callbacks` (neon/json_transformer.py `transform_for_callback_engine`): `{callbacks[
  {component_id, callback_type, phase, properties, relationships}], phase,
  execution_mode}`.
- `components` (bem.models.legacy): one callback per component, `relational` when the
  payload's phase is `beta` and `combinatorial` otherwise (the rule of the old transformer).

The callbacks' components are the graph the pulses run on: one node each (phase beta for a
relational callback, gamma for a combinatorial one, attrs the scalars of `properties`),
stored in graph_runtime (content-addressed: the same components, the same graph). Each
callback is one event (`POST /events`) starting at its component: `compliancy` for
relational (it triggers the beta, relational callback), `bid` for combinatorial (the gamma
one). The answer comes once the events are in the log, as `POST /events`' 202 does, but as
a 200 whose `status` is `success`: the old clients take any other status for a failure. The
events are processed afterwards; `GET /events/{event_id}` gives each one's result.

Idempotency: each event's key is derived from the envelope (timestamp, source, X-Request-ID)
and the callbacks, so an identical envelope sent again (a retry) is accepted once.
`relationships`, the callbacks' `phase` and `execution_mode` (always event-driven here) are
accepted and not used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bem.errors import ValidationFailed
from bem.models.legacy import ID_KEYS, OldComponents, invalid, scalars
from bem.runtime.runtime import ServiceContext
from bem.runtime.service import OldPayload
from bem.services.callback_engine.models import MAX_EVENTS_PER_REQUEST, SubmitAnswer

Submit = Callable[..., Awaitable[SubmitAnswer]]  # the service's own operation, handed in

PULSE_OF = {"relational": "compliancy", "combinatorial": "bid"}
PHASE_OF = {"relational": "beta", "combinatorial": "gamma"}


class OldCallback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    component_id: str = Field(min_length=1, max_length=128,
                              description="the component the pulse starts at")
    callback_type: str = Field(description="relational or combinatorial")
    phase: str | None = Field(None, max_length=64, description="not used: callback_type "
                                                               "decides")
    properties: dict[str, Any] = Field(default_factory=dict,
                                       description="its scalars become the node's attrs")
    relationships: list[Any] = Field(default_factory=list, description="not used")

    @field_validator("component_id", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if value is None:
            raise invalid("required: the component the pulse starts at (null names none; "
                          "the old transformer reads component_id, not id, from a component)")
        return value

    @field_validator("callback_type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value == "dag":
            raise invalid("dag callbacks run in dag_alpha (its /process takes node_sequence); "
                          "callback_engine runs relational and combinatorial ones")
        if value not in PULSE_OF:
            raise invalid(f"unknown callback type {value!r}; known: relational, "
                          f"combinatorial")
        return value


class OldCallbacks(BaseModel):
    """The old callbacks: each one a pulse event on the graph of their components."""

    model_config = ConfigDict(extra="forbid")

    callbacks: list[OldCallback] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)
    phase: str | None = Field(None, max_length=64, description="not used")
    execution_mode: str | None = Field(None, max_length=64,
                                       description="not used (always event-driven)")


def graph_of(callbacks: list[OldCallback]) -> dict[str, Any]:
    """One node per callback's component; a component named twice is a 422."""
    seen: dict[str, int] = {}
    nodes = []
    for i, cb in enumerate(callbacks):
        if cb.component_id in seen:
            field = f"data.callbacks[{i}].component_id"
            raise ValidationFailed(f"{field}: component {cb.component_id!r} already has "
                                   f"callbacks[{seen[cb.component_id]}]; one callback per "
                                   f"component", field=field)
        seen[cb.component_id] = i
        nodes.append({"id": cb.component_id, "phase": PHASE_OF[cb.callback_type],
                      "callback": cb.callback_type,
                      "attrs": scalars(cb.properties, skip=ID_KEYS)})
    return {"name": "callbacks sent to /process", "nodes": nodes}


def events(callbacks: list[OldCallback], graph_id: str, key: str) -> list[dict[str, Any]]:
    # json, not orjson: properties may hold integers beyond 64 bits, which orjson refuses
    content = json.dumps([cb.model_dump(mode="json") for cb in callbacks], sort_keys=True)
    digest = hashlib.sha256(content.encode()).hexdigest()[:32]
    return [{"idempotency_key": f"process:{key}:{digest}:{i}",
             "type": PULSE_OF[cb.callback_type], "node": cb.component_id,
             "graph_id": graph_id,
             "payload": {"old_callback_type": cb.callback_type, "old_phase": cb.phase}}
            for i, cb in enumerate(callbacks)]


async def submit(ctx: ServiceContext, callbacks: list[OldCallback], key: str,
                 submit_events: Submit) -> dict[str, Any]:
    # a peer: imported on the first call, not at start-up
    from bem.services.graph_runtime.api import store_graph
    stored = await ctx.call(store_graph, graph_of(callbacks))
    batch = events(callbacks, stored.graph_id, key)
    accepted = await ctx.call(submit_events, {"events": batch})
    return {"callback_execution_status": "accepted", "durable": accepted.durable,
            "graph_id": stored.graph_id,
            "events": [{"component_id": cb.component_id, "pulse_type": e["type"],
                        **a.model_dump(mode="json")}
                       for cb, e, a in zip(callbacks, batch, accepted.events, strict=True)]}


async def serve_callbacks(old: OldCallbacks, ctx: ServiceContext, key: str, *,
                          submit_events: Submit) -> dict[str, Any]:
    return await submit(ctx, old.callbacks, key, submit_events)


async def serve_components(old: OldComponents, ctx: ServiceContext, key: str, *,
                           submit_events: Submit) -> dict[str, Any]:
    if len(old.components) > MAX_EVENTS_PER_REQUEST:
        raise ValidationFailed(f"data.components: {len(old.components)} components, at most "
                               f"{MAX_EVENTS_PER_REQUEST} (one event each) per request",
                               field="data.components")
    callback_type = "relational" if old.phase == "beta" else "combinatorial"
    callbacks = [OldCallback(component_id=c.key, callback_type=callback_type, phase=old.phase,
                             properties=c.model_extra or {}) for _, c in old.selected()]
    return await submit(ctx, callbacks, key, submit_events)


def payloads(submit_events: Submit) -> tuple[OldPayload, ...]:
    """The old payloads, served by the service's own `submit_events` (handed in by the API
    module, which imports this one)."""
    return (OldPayload("callbacks", OldCallbacks,
                       partial(serve_callbacks, submit_events=submit_events)),
            OldPayload("components", OldComponents,
                       partial(serve_components, submit_events=submit_events)))
