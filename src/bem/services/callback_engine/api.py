"""callback_engine (5002): durable pulse events, routed along the project graph."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Query

from bem.errors import NotFound, ServiceUnavailable
from bem.runtime.runtime import Ctx, ServiceContext
from bem.runtime.service import ServiceSpec
from bem.runtime.tracing import event_context
from bem.services.callback_engine import legacy
from bem.services.callback_engine.consumer import Engine
from bem.services.callback_engine.eventlog import EventLog, MemoryLog
from bem.services.callback_engine.models import (
    MAX_RECENT,
    Accepted,
    EventState,
    RecentEvents,
    Stats,
    SubmitAnswer,
    SubmitRequest,
)
from bem.services.callback_engine.redislog import RedisLog

service = ServiceSpec(
    name="callback_engine",
    title="BEM callback engine",
    description=(
        "Accepts pulse events (bid, occupancy, compliancy, fit, investment, decay, reject) "
        "with an idempotency key each, appends them to a durable log (a Redis stream read "
        "by a consumer group; in-process without REDIS_URL) and answers 202 once they are "
        "appended. A consumer processes them in batches of CALLBACK_BATCH_SIZE: it routes "
        "each pulse along the project graph (direction, target phase, urgency and decay by "
        "pulse type), runs the beta (relational: compliance across edges) and gamma "
        "(combinatorial: bids and investment over neighbours) callbacks, stores the result "
        "and publishes the pulses on the bus (Redis channel bem:bus:pulses). Each accepted "
        "event is processed exactly once in effect, even across a crash."),
    legacy_operation="submit_events",
)

_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@service.lifespan
async def _lifespan(ctx: ServiceContext) -> AsyncIterator[None]:
    rt = ctx.runtime
    retention = ctx.settings.callback_retention
    log: EventLog = (RedisLog(rt.redis, rt.instance_id, retention) if rt.redis.configured
                     else MemoryLog(rt.bus, retention))
    engine = Engine(ctx, log)
    await engine.start()
    ctx.state["engine"] = engine
    try:
        yield
    finally:
        del ctx.state["engine"]
        await engine.stop(grace=min(5.0, ctx.settings.grace_period))


def _engine(ctx: ServiceContext) -> Engine:
    engine = ctx.state.get("engine")
    if engine is None:  # an in-process caller before the lifespan ran (or after it ended)
        raise ServiceUnavailable("callback_engine is not running yet; retry shortly",
                                 headers={"Retry-After": "1"})
    return engine  # type: ignore[no-any-return]


@service.health_check
def _health(ctx: ServiceContext) -> dict[str, dict[str, Any]]:
    engine: Engine | None = ctx.state.get("engine")
    return engine.health() if engine is not None else {}


@service.operation("POST", "/events", status_code=202, idempotent=True)
async def submit_events(body: SubmitRequest, ctx: Ctx) -> SubmitAnswer:
    """Append pulse events to the log; 202 once appended (a resent key is a duplicate)."""
    now = round(time.time(), 3)
    trace = event_context(ctx)  # continued by the consumer, wherever and whenever it runs
    events = [{**e.model_dump(mode="json"), "accepted_at": now, **trace} for e in body.events]
    engine = _engine(ctx)
    appended = await engine.log.append(events)
    dups = sum(dup for _, dup in appended)
    engine.outcomes["accepted"].inc(len(appended) - dups)
    engine.outcomes["duplicate"].inc(dups)
    return SubmitAnswer(
        events=[Accepted(event_id=eid, idempotency_key=e.idempotency_key, duplicate=dup)
                for e, (eid, dup) in zip(body.events, appended, strict=True)],
        durable=engine.log.durable)


@service.operation("GET", "/events/{event_id}")
async def get_event(event_id: str, ctx: Ctx) -> EventState:
    """An event's status (pending, processed, failed), attempts, result or error."""
    log = _engine(ctx).log
    state = await log.get(event_id) if _EVENT_ID.match(event_id) else None
    if state is None:
        raise NotFound(f"event_id: no event {event_id!r}", field="event_id")
    return EventState.model_validate(state)


@service.operation("GET", "/events")
async def recent_events(ctx: Ctx, limit: Annotated[int, Query(ge=1, le=MAX_RECENT)] = 100
                        ) -> RecentEvents:
    """The last `limit` finished events (processed or failed), most recently finished first;
    finished events are kept for CALLBACK_RETENTION seconds."""
    records = await _engine(ctx).log.recent(limit)
    return RecentEvents(events=[EventState.model_validate(r) for r in records])


@service.operation("GET", "/stats")
async def stats(ctx: Ctx) -> Stats:
    """Depth, lag and outcome counts of the event log."""
    numbers = await _engine(ctx).log.stats()
    return Stats(**numbers, batch_size=ctx.settings.callback_batch_size,
                 max_attempts=ctx.settings.callback_max_attempts)


service.legacy_payloads = legacy.payloads(submit_events)
