"""Exactly once across SIGKILL: real `bem serve` processes on a real redis-server.

The logic cluster is killed (its whole session) while events are still unprocessed, then
restarted against the same Redis. An independent subscriber, connected throughout, counts
every pulse published on the Redis channel.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
import redis as redis_sync

from bem.services.callback_engine import redislog
from tests.support import RedisServer, Topology

pytestmark = pytest.mark.slow

CHUNKS, CHUNK = 6, 500  # events sent before the kill, per request
TYPES = ("bid", "occupancy", "compliancy", "fit", "investment", "decay", "reject")
NODES = tuple(f"V{i:02d}" for i in range(1, 11))


class PulseCounter:
    """A redis-py subscriber on its own thread, counting pulses per (event, node)."""

    def __init__(self, url: str) -> None:
        self.client = redis_sync.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.seen: Counter[tuple[str, str]] = Counter()
        self.total = 0
        self.lock = threading.Lock()
        self.pubsub.subscribe(**{"bem:bus:pulses": self._on_message})
        self.thread = self.pubsub.run_in_thread(sleep_time=0.01, daemon=True)

    def _on_message(self, message: dict[str, Any]) -> None:
        pulse = orjson.loads(message["data"])
        with self.lock:
            self.seen[(pulse["event_id"], pulse["node"])] += 1
            self.total += 1

    def wait_for(self, total: int, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.total < total and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # anything extra (a duplicate) would arrive now
        return self.total

    def close(self) -> None:
        self.thread.stop()
        self.thread.join(5)
        self.pubsub.close()
        self.client.close()


def batch(chunk: int, graph_id: str | None) -> list[dict[str, Any]]:
    return [{"idempotency_key": f"crash-{chunk}-{i}", "type": TYPES[i % len(TYPES)],
             "node": NODES[(i * 3 + chunk) % len(NODES)], "graph_id": graph_id,
             "magnitude": 0.5 + (i % 4) / 2} for i in range(CHUNK)]


def wait_drained(http: httpx.Client, accepted: int, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = http.get("/stats").json()
        done = stats["processed"] + stats["failed"]
        if (done >= accepted and stats["depth"] == 0) or time.monotonic() > deadline:
            return stats  # type: ignore[no-any-return]
        time.sleep(0.1)


def test_sigkill_loses_nothing_and_repeats_nothing(redis: RedisServer,
                                                   sample: dict[str, Any]) -> None:
    direct = redis_sync.Redis.from_url(redis.url)
    pulses = PulseCounter(redis.url)
    try:
        with Topology(["compute", "logic"], redis_url=redis.url, callback_batch_size=5,
                      registry_ttl=2) as topo, \
                httpx.Client(base_url=topo.url("callback_engine"), timeout=30) as http:
            gid = httpx.post(topo.url("graph_runtime") + "/graphs", json=sample,
                             timeout=30).json()["graph_id"]
            sent = [batch(c, gid if c % 2 else None) for c in range(CHUNKS)]
            ids: list[str] = []
            for events in sent:
                r = http.post("/events", json={"events": events})
                assert r.status_code == 202, r.text
                ids += [a["event_id"] for a in r.json()["events"]]
            topo["logic"].kill()

            unfinished = direct.xlen(redislog.STREAM)
            in_flight = direct.xpending(redislog.STREAM, redislog.GROUP)["pending"]
            assert unfinished > 0, "every event was processed before the kill: send more"
            topo["logic"].start().wait_ready()

            again = http.post("/events", json={"events": sent[0]})  # resent after the crash
            assert [a["event_id"] for a in again.json()["events"]] == ids[:CHUNK]
            assert all(a["duplicate"] for a in again.json()["events"])

            stats = wait_drained(http, len(ids))
            assert (stats["accepted"], stats["duplicates"]) == (len(ids), CHUNK)
            assert (stats["processed"], stats["failed"]) == (len(ids), 0), stats
            assert (stats["depth"], stats["pending"]) == (0, 0)

            records = {k.decode(): orjson.loads(v)
                       for k, v in direct.hgetall(redislog.RECORDS).items()}
            assert sorted(records) == sorted(ids)  # no loss, one record each
            assert {r["status"] for r in records.values()} == {"processed"}
            expected = sum(r["result"]["pulses"] for r in records.values())
            assert pulses.wait_for(expected) == expected, (unfinished, in_flight)
            assert set(pulses.seen.values()) == {1}  # no pulse twice
            per_event = Counter(event_id for event_id, _ in pulses.seen)
            assert all(per_event[i] == records[i]["result"]["pulses"] for i in ids)
    finally:
        pulses.close()
        direct.close()
