"""The event log: what the consumer reads and finishes, and the in-process implementation.

Two implementations share one interface (`EventLog`): `RedisLog` (redislog.py, durable,
Redis Streams with a consumer group) and `MemoryLog` here (embedded mode: no REDIS_URL; the
log lives and dies with the process, which health reports).

The life of an event: `append` (accepted, idempotency key recorded) -> `read` by a consumer
(pending) -> `finish` (record stored, pulses published and entry removed, as one step) or
`note_failure` (attempt counted, entry stays pending for a retry). Event ids have the
Redis stream id form `<milliseconds>-<sequence>` in both implementations.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bem.errors import InsufficientStorage
from bem.runtime.bus import PulseBus

PULSE_TOPIC = "pulses"
MEMORY_CAPACITY = 100_000  # embedded mode: unfinished events held, and finished ones kept


@dataclass(frozen=True)
class Entry:
    event_id: str
    event: dict[str, Any]  # the accepted PulseEvent fields plus accepted_at (epoch seconds)


@dataclass(frozen=True)
class Finished:
    entry: Entry
    record: dict[str, Any]  # the final state answered by GET /events/{id}
    status: Literal["processed", "failed"]
    pulses: list[dict[str, Any]] = field(default_factory=list)


class EventLog(Protocol):
    backend: str
    durable: bool

    async def start(self) -> None: ...

    async def append(self, events: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        """Append events unless their idempotency key is known: [(event_id, duplicate)]."""

    async def read(self, count: int, *, own: bool, block: float = 0.0) -> list[Entry]:
        """New events (`own=False`, waiting up to `block` s) or this consumer's unfinished
        ones (`own=True`: retries and entries left by an interrupted batch)."""

    async def finish(self, done: list[Finished]) -> list[bool]:
        """Store each record, publish its pulses and remove its entry, atomically per
        event; False for an event already finished (its effects are not repeated)."""

    async def note_failure(self, entry: Entry, error: str) -> int:
        """Count a failed attempt; returns the attempts so far."""

    async def attempts(self, event_ids: list[str]) -> dict[str, int]:
        """Failed attempts counted so far for unfinished events (retries, reclaimed ones)."""

    async def get(self, event_id: str) -> dict[str, Any] | None: ...

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        """The records of the last `limit` finished events, most recently finished first."""

    async def stats(self) -> dict[str, Any]: ...

    async def maintain(self) -> int:
        """Periodic upkeep (liveness, reclaiming a dead consumer's events): events reclaimed."""

    def health(self) -> dict[str, Any]: ...


def state_of(event_id: str, event: dict[str, Any], attempts: int, error: str | None
             ) -> dict[str, Any]:
    """The GET /events/{id} answer of an unfinished event."""
    return {"event_id": event_id, **event, "status": "pending", "attempts": attempts,
            "result": None, "error": error}


class MemoryLog:
    """The embedded log: one process, one consumer, nothing survives a restart."""

    backend = "memory"
    durable = False

    def __init__(self, bus: PulseBus, retention: float, capacity: int = MEMORY_CAPACITY
                 ) -> None:
        self.bus = bus
        self.retention = retention
        self.capacity = capacity
        self._unfinished: dict[str, dict[str, Any]] = {}
        self._queue: deque[str] = deque()  # not yet read
        self._pending: dict[str, None] = {}  # read, unfinished (ordered set)
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._keys: dict[str, str] = {}
        self._failures: dict[str, tuple[int, str]] = {}
        self._counters: Counter[str] = Counter()
        self._arrived = asyncio.Event()
        self._last = (0, -1)

    async def start(self) -> None:
        return None

    def _next_id(self) -> str:
        ms = max(int(time.time() * 1000), self._last[0])
        seq = self._last[1] + 1 if ms == self._last[0] else 0
        self._last = (ms, seq)
        return f"{ms}-{seq}"

    async def append(self, events: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        new = sum(1 for e in events if e["idempotency_key"] not in self._keys)
        if len(self._unfinished) + new > self.capacity:
            raise InsufficientStorage(
                f"events: the embedded event log holds {len(self._unfinished)} unprocessed "
                f"events (limit {self.capacity}); retry later or configure REDIS_URL",
                field="events", headers={"Retry-After": "2"})
        out = []
        for event in events:
            known = self._keys.get(event["idempotency_key"])
            if known is not None:
                self._counters["duplicates"] += 1
                out.append((known, True))
                continue
            event_id = self._next_id()
            self._keys[event["idempotency_key"]] = event_id
            self._unfinished[event_id] = event
            self._queue.append(event_id)
            self._counters["accepted"] += 1
            out.append((event_id, False))
        self._arrived.set()
        return out

    async def read(self, count: int, *, own: bool, block: float = 0.0) -> list[Entry]:
        if own:
            ids = list(self._pending)[:count]
        else:
            if not self._queue and block > 0:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), block)
            ids = [self._queue.popleft() for _ in range(min(count, len(self._queue)))]
            self._pending.update(dict.fromkeys(ids))
        return [Entry(i, self._unfinished[i]) for i in ids]

    async def finish(self, done: list[Finished]) -> list[bool]:
        created = []
        for f in done:
            event_id = f.entry.event_id
            fresh = event_id not in self._records and event_id in self._unfinished
            if fresh:
                self._records[event_id] = f.record
                self._counters[f.status] += 1
                for pulse in f.pulses:
                    await self.bus.publish(PULSE_TOPIC, pulse)
            self._unfinished.pop(event_id, None)
            self._pending.pop(event_id, None)
            self._failures.pop(event_id, None)
            created.append(fresh)
        self._prune()
        return created

    def _prune(self) -> None:
        """Forget the oldest finished events (key included) beyond retention or capacity."""
        cutoff = time.time() - self.retention
        while self._records:
            old_id, old = next(iter(self._records.items()))
            if len(self._records) <= self.capacity and old["finished_at"] >= cutoff:
                break
            del self._records[old_id]
            if self._keys.get(old["idempotency_key"]) == old_id:
                del self._keys[old["idempotency_key"]]

    async def note_failure(self, entry: Entry, error: str) -> int:
        attempts = self._failures.get(entry.event_id, (0, ""))[0] + 1
        self._failures[entry.event_id] = (attempts, error)
        return attempts

    async def attempts(self, event_ids: list[str]) -> dict[str, int]:
        return {i: self._failures[i][0] for i in event_ids if i in self._failures}

    async def get(self, event_id: str) -> dict[str, Any] | None:
        if event_id in self._records:
            return self._records[event_id]
        if event_id in self._unfinished:
            attempts, error = self._failures.get(event_id, (0, None))
            return state_of(event_id, self._unfinished[event_id], attempts, error)
        return None

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        return list(itertools.islice(reversed(self._records.values()), limit))

    async def stats(self) -> dict[str, Any]:
        oldest = next(iter(self._unfinished), None)
        age = time.time() - int(oldest.split("-")[0]) / 1000 if oldest else 0.0
        c = self._counters
        return {"backend": self.backend, "durable": self.durable,
                "depth": len(self._unfinished), "lag": len(self._queue),
                "pending": len(self._pending), "lag_seconds": round(max(0.0, age), 3),
                "accepted": c["accepted"], "duplicates": c["duplicates"],
                "processed": c["processed"], "failed": c["failed"]}

    async def maintain(self) -> int:
        self._prune()
        return 0

    def health(self) -> dict[str, Any]:
        return {"status": "warn", "observedValue": "in-process (not durable)",
                "output": "REDIS_URL is unset: accepted events live in this process and are "
                          "lost if it stops; set REDIS_URL for a durable log"}
