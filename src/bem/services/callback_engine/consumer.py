"""The consumer: reads the event log in batches, routes each pulse, finishes each event.

One consumer task per process, plus an upkeep task (heartbeat, reclaiming the pending
events of dead consumers, the lag gauge). For each batch of CALLBACK_BATCH_SIZE events:
fetch the graphs it needs through the service client (cached by graph id: stored graphs are
content-addressed, so immutable), compute each event (compute.py), then finish the whole
batch in one call (one Lua script with Redis).

Failures. An error of the event itself (unknown node or graph, a bad attribute, a bug) is
counted; the event is retried until CALLBACK_MAX_ATTEMPTS and then parked as failed with
its error. An unavailable dependency (graph_runtime or Redis down, a timeout) says nothing
about the event: it stays pending, uncounted, and the consumer backs off and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

from bem.errors import BemError, ServiceUnavailable, UpstreamTimeout
from bem.runtime.runtime import ServiceContext
from bem.runtime.tracing import event_spans
from bem.services.callback_engine import compute
from bem.services.callback_engine.eventlog import Entry, EventLog, Finished

log = logging.getLogger("bem.callback_engine")

TRANSIENT = (ServiceUnavailable, UpstreamTimeout)
BLOCK_SECONDS = 1.0  # longest wait for new events before checking for a stop
UPKEEP_SECONDS = 1.0
GRAPH_CACHE = 32  # graph indexes kept per process
BACKOFF_MIN, BACKOFF_MAX = 0.2, 5.0
OUTCOMES = ("accepted", "duplicate", "processed", "failed", "retried", "redelivered",
            "deferred")


def describe(exc: BaseException) -> str:
    if isinstance(exc, BemError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


class Engine:
    """The consumer and upkeep tasks of one process, over one event log."""

    def __init__(self, ctx: ServiceContext, log: EventLog) -> None:
        self.ctx = ctx
        self.log = log
        self.batch_size = ctx.settings.callback_batch_size
        self.max_attempts = ctx.settings.callback_max_attempts
        self.retry_own = True  # at start, first finish what this consumer left unfinished
        self.graphs: OrderedDict[str | None, compute.GraphIndex] = OrderedDict()
        self.last_error: str | None = None
        self.last_stats: dict[str, Any] = {}
        self._stopping = asyncio.Event()
        self._waiting = False  # blocked reading new events: nothing in hand to finish
        self._tasks: list[asyncio.Task[None]] = []
        m = ctx.runtime.metrics
        self.outcomes = {o: m.events.labels(ctx.name, m.cluster, o) for o in OUTCOMES}
        self.spans = event_spans(ctx)  # None when tracing is off
        self._lag = m.event_lag.labels(ctx.name, m.cluster)

    async def start(self) -> None:
        await self.log.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(), name="callback-consumer"),
                       loop.create_task(self._upkeep(), name="callback-upkeep")]

    async def stop(self, grace: float = 5.0) -> None:
        """Let the current batch finish (within `grace`), then cancel.

        An idle consumer is cancelled at once: events a cancelled read may have taken stay
        pending under this consumer and are reclaimed once its heartbeat has expired.
        """
        self._stopping.set()
        if not self._tasks:
            return
        if self._waiting:
            self._tasks[0].cancel()
        _, late = await asyncio.wait(self._tasks, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._tasks[0].done()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _consume(self) -> None:
        while not self.ctx.runtime.ready and not self._stopping.is_set():
            await self._pause(0.05)  # runtime.ready is a flag; peers start meanwhile
        backoff = BACKOFF_MIN
        while not self._stopping.is_set():
            try:
                await self.step()
            except Exception as exc:
                self.retry_own = True
                self.last_error = describe(exc)
                if not isinstance(exc, TRANSIENT):  # a bug must not stop the consumer
                    log.exception("callback consumer error; retrying in %.1fs", backoff)
                await self._pause(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
            else:
                backoff = BACKOFF_MIN
                self.last_error = None

    async def step(self) -> int:
        """Read and handle one batch; returns the number of events read."""
        entries: list[Entry] = []
        prior: dict[str, int] = {}
        if self.retry_own:
            entries = await self.log.read(self.batch_size, own=True)
            self.retry_own = bool(entries)
            prior = await self.log.attempts([e.event_id for e in entries]) if entries else {}
        if not entries:
            self._waiting = True
            try:
                entries = await self.log.read(self.batch_size, own=False, block=BLOCK_SECONDS)
            finally:
                self._waiting = False
        if entries:
            await self.handle(entries, prior)
        return len(entries)

    async def handle(self, entries: list[Entry], prior: dict[str, int]) -> None:
        if self.spans is not None:
            return await self.spans.consume(entries, prior, self._handle)
        return await self._handle(entries, prior)

    async def _handle(self, entries: list[Entry], prior: dict[str, int]) -> None:
        graphs = await self._graphs({e.event.get("graph_id") for e in entries})
        done: list[Finished] = []
        deferred: BaseException | None = None
        for entry in entries:
            graph = graphs[entry.event.get("graph_id")]
            if isinstance(graph, TRANSIENT):
                deferred = graph
                continue
            try:
                if isinstance(graph, BaseException):
                    raise graph
                result, pulses = compute.process_event(graph, entry.event_id, entry.event)
            except Exception as exc:
                finished = await self._failed(entry, exc)
                if finished is not None:
                    done.append(finished)
                continue
            attempts = prior.get(entry.event_id, 0) + 1
            done.append(Finished(entry, record(entry, "processed", attempts, result, None),
                                 "processed", pulses))
        finished = await (self.log.finish(done) if self.spans is None
                          else self.spans.finish(done, self.log.finish))
        for f, fresh in zip(done, finished, strict=True):
            self.outcomes[f.status if fresh else "redelivered"].inc()
        if deferred is not None:
            self.outcomes["deferred"].inc(len(entries) - len(done))
            raise deferred  # back off; the deferred events stay pending, uncounted

    async def _failed(self, entry: Entry, exc: Exception) -> Finished | None:
        error = describe(exc)
        if not isinstance(exc, BemError):
            log.exception("event %s: unexpected error", entry.event_id)
        attempts = await self.log.note_failure(entry, error)
        if attempts < self.max_attempts:
            self.retry_own = True
            self.outcomes["retried"].inc()
            return None
        log.warning("event %s failed %d times, parked as failed: %s", entry.event_id,
                    attempts, error)
        return Finished(entry, record(entry, "failed", attempts, None, error), "failed")

    async def _graphs(self, ids: set[str | None]) -> dict[str | None, Any]:
        """Each graph id -> its index, or the error fetching it raised."""
        out: dict[str | None, Any] = {}
        for gid in ids:
            if gid in self.graphs:
                self.graphs.move_to_end(gid)
                out[gid] = self.graphs[gid]
        missing = [gid for gid in ids if gid not in out]
        found = await asyncio.gather(*(self._fetch(gid) for gid in missing),
                                     return_exceptions=True)
        return {**out, **dict(zip(missing, found, strict=True))}

    async def _fetch(self, gid: str | None) -> compute.GraphIndex:
        # a peer: imported on the first call, not at start-up
        from bem.services.graph_runtime.api import get_graph, sample
        if gid is None:
            graph = await self.ctx.call(sample)
        else:
            graph = await self.ctx.call(get_graph, graph_id=gid)
        index = compute.index_graph(graph.model_dump(mode="json"), gid or "sample")
        self.graphs[gid] = index
        while len(self.graphs) > GRAPH_CACHE:
            self.graphs.popitem(last=False)
        return index

    async def _upkeep(self) -> None:
        while not self._stopping.is_set():
            try:
                if await self.log.maintain():
                    self.retry_own = True  # claimed events of a dead consumer
                self.last_stats = await self.log.stats()
                self._lag.set(self.last_stats["depth"])
            except TRANSIENT:
                pass  # Redis is down: the consumer reports it
            except Exception:
                log.exception("callback engine upkeep failed")
            await self._pause(UPKEEP_SECONDS)

    def health(self) -> dict[str, dict[str, Any]]:
        depth = self.last_stats.get("depth", 0)
        if not self.running:
            consumer = {"status": "fail", "output": "the consumer task is not running"}
        elif self.last_error:
            consumer = {"status": "warn", "output": f"retrying: {self.last_error}"}
        else:
            consumer = {"status": "pass", "output": f"batch size {self.batch_size}"}
        return {"eventlog:durability": self.log.health(),
                "eventlog:lag": {**consumer, "observedValue": depth,
                                 "observedUnit": "events"}}


def record(entry: Entry, status: str, attempts: int, result: dict[str, Any] | None,
           error: str | None) -> dict[str, Any]:
    """The final state of an event, answered by GET /events/{id}."""
    return {"event_id": entry.event_id, **entry.event, "status": status,
            "attempts": attempts, "result": result, "error": error,
            "finished_at": round(time.time(), 3)}
