"""Events under faults: who was told what, and proof that nothing acknowledged was lost.

`EventBook` hands out events with unique idempotency keys and records each answer: an
acknowledgement (202 over REST, `ack` over the WebSocket) with its event id, or a refusal
(503 with Retry-After, `error` with status 503). After the fault, `settle` resends the
refused keys, as a client told to retry would, waits for the log to drain and checks, from
Redis itself, that every acknowledged event was processed exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

import httpx
import orjson
import redis as redis_sync
import websockets

from bem.services.callback_engine import redislog
from tests.faults.support import Request, Tally

TYPES = ("bid", "occupancy", "compliancy", "fit", "investment", "decay", "reject")
NODES = tuple(f"V{i:02d}" for i in range(1, 11))


class EventBook:
    def __init__(self, prefix: str, per_request: int = 5) -> None:
        self.prefix = prefix
        self.per_request = per_request
        self._numbers = itertools.count()
        self.acked: dict[str, str] = {}  # idempotency key -> event id
        self.refused: dict[str, dict[str, Any]] = {}  # idempotency key -> the event
        self.unexpected: list[str] = []

    def event(self) -> dict[str, Any]:
        i = next(self._numbers)
        return {"idempotency_key": f"{self.prefix}-{i}", "type": TYPES[i % len(TYPES)],
                "node": NODES[(i * 3) % len(NODES)], "magnitude": 0.5 + (i % 4) / 2}

    def rest_request(self) -> Request:
        return Request("events", "POST", "/callback_engine/events", refusable=True,
                       body=lambda _n: {"events": [self.event()
                                                   for _ in range(self.per_request)]})

    def observe(self, request: Request, body: Any, answer: httpx.Response) -> None:
        if request.name != "events":
            return
        if answer.status_code == 202:
            for accepted in answer.json()["events"]:
                self.ack(accepted["idempotency_key"], accepted["event_id"])
        elif answer.status_code == 503:
            self.refused.update((e["idempotency_key"], e) for e in body["events"])

    async def backlog(self, http: httpx.AsyncClient, n: int) -> None:
        """Submit `n` events in one request: more than the consumer's next few batches."""
        events = [self.event() for _ in range(n)]
        answer = await http.post("/callback_engine/events", json={"events": events})
        assert answer.status_code == 202, answer.text
        for accepted in answer.json()["events"]:
            self.ack(accepted["idempotency_key"], accepted["event_id"])

    def ack(self, key: str, event_id: str) -> None:
        previous = self.acked.setdefault(key, event_id)
        if previous != event_id:
            self.unexpected.append(f"{key} acknowledged as {previous} and as {event_id}")


async def websocket_submitter(url: str, book: EventBook, tally: Tally,
                              stop: asyncio.Event) -> None:
    """One client submitting events over the ECM WebSocket, one at a time, until stopped."""
    async with websockets.connect(url) as ws:
        hello = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello", hello
        while not stop.is_set():
            event = book.event()
            key = event["idempotency_key"]
            await ws.send(orjson.dumps({"type": "event", "id": key, "payload": event}).decode())
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            while reply["type"] in ("heartbeat", "dropped"):
                reply = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            if reply["type"] == "ack" and reply.get("id") == key:
                book.ack(key, reply["payload"]["event_id"])
                tally.count("ws_event", "ok")
            elif reply["type"] == "error" and reply["payload"].get("status") == 503:
                book.refused[key] = event
                tally.count("ws_event", "refused")
            else:
                tally.count("ws_event", "failed", str(reply)[:300])


def resend_refused(logic_url: str, book: EventBook) -> int:
    """Resend every refused key that was never acknowledged: what a client told to retry
    does. A refused event may have been appended just before its answer was lost: then the
    resend is answered with the original id (a duplicate)."""
    keys = sorted(book.refused.keys() - book.acked.keys())
    with httpx.Client(base_url=logic_url, timeout=30) as http:
        for start in range(0, len(keys), 500):
            events = [book.refused[k] for k in keys[start:start + 500]]
            answer = http.post("/events", json={"events": events})
            assert answer.status_code == 202, answer.text
            for accepted in answer.json()["events"]:
                book.ack(accepted["idempotency_key"], accepted["event_id"])
    return len(keys)


def wait_drained(logic_url: str, limit: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    with httpx.Client(base_url=logic_url, timeout=10) as http:
        while True:
            stats = http.get("/stats").json()
            if stats["depth"] == 0 or time.monotonic() > deadline:
                return stats  # type: ignore[no-any-return]
            time.sleep(0.1)


def verify_exactly_once(redis_url: str, book: EventBook) -> dict[str, int]:
    """Every acknowledged event has exactly one record, `processed`; no key has two."""
    client = redis_sync.Redis.from_url(redis_url)
    try:
        records = {k.decode(): orjson.loads(v)
                   for k, v in client.hgetall(redislog.RECORDS).items()}
    finally:
        client.close()
    mine = {i: r for i, r in records.items()
            if r["idempotency_key"].startswith(book.prefix + "-")}
    missing = sorted(set(book.acked.values()) - mine.keys())
    assert not missing, f"{len(missing)} acknowledged events have no record: {missing[:5]}"
    per_key = Counter(r["idempotency_key"] for r in mine.values())
    assert max(per_key.values(), default=1) == 1, per_key.most_common(3)
    statuses = Counter(r["status"] for r in mine.values())
    assert statuses == Counter({"processed": len(mine)}), statuses
    assert not book.unexpected, book.unexpected[:5]
    return {"events_acknowledged": len(book.acked), "events_processed": len(mine)}
