"""Faults inside the optimized topology, under steady load through the gateway.

compute, logic and gateway as real `bem serve` processes on one private redis-server
(appendonly, fsync always), loopback only. Each scenario starts from a healthy platform,
sends a bounded stream of requests, injects its fault, and reports what the clients saw:

- a pool worker SIGKILLed while busy, three times: no request fails (the task is retried on
  a fresh worker) and the pool is back to full size;
- Redis killed for several seconds, then restarted: compute keeps answering; events are
  refused with 503 + Retry-After while it is down, never acknowledged and then lost;
- the logic cluster SIGKILLed with events pending (submitted over REST and the ECM
  WebSocket), then restarted: every acknowledged event is processed exactly once, each of
  its pulses published once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import httpx
import orjson
import psutil
import pytest
import redis as redis_sync

from bem.services.callback_engine import redislog
from tests.faults.events import (
    EventBook,
    resend_refused,
    verify_exactly_once,
    wait_drained,
    websocket_submitter,
)
from tests.faults.support import (
    Load,
    Request,
    Tally,
    phase,
    pool_workers,
    sample_variant,
    until_sent,
    wait_until,
    wide_graph,
)
from tests.services.callback_engine.test_crash import PulseCounter
from tests.support import RedisServer, Topology, graph_input, redis_server

pytestmark = pytest.mark.slow

REDIS_DOWN_S = 4.0  # how long Redis stays down
WORKER_KILLS = 3
BACKLOG = 1000  # events submitted just before the logic cluster is killed


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def platform(redis: RedisServer) -> Iterator[Topology]:
    # Every analysis goes to the pool (2 workers); small callback batches keep a
    # backlog of events; a short registry TTL forgets a killed cluster quickly.
    with Topology(["compute", "logic", "gateway"], redis_url=redis.url, workers=2,
                  inline_budget_ms=0, callback_batch_size=5, registry_ttl=2,
                  rate_limit_rps=1_000_000, rate_limit_burst=1_000_000) as topo:
        yield topo


@pytest.fixture
def healthy(platform: Topology, redis: RedisServer) -> Topology:
    """Each scenario starts from every process running and every port ready."""
    if redis.process is None:
        redis.start()
    for cluster in platform.clusters.values():
        if cluster.process is None or cluster.process.poll() is not None:
            cluster.start()
        cluster.wait_ready()
    return platform


def compute_mix() -> list[Request]:
    """Idempotent compute work through the gateway, a fresh graph each time (no cache)."""
    return [
        Request("analyze", "POST", "/graph_runtime/analyze", lambda n: {
            "graph": sample_variant(n), "metrics": ["summary", "critical_path", "pagerank"]}),
        Request("dag_run", "POST", "/dag_alpha/run", lambda n: {"graph": sample_variant(n)}),
        Request("sfde_evaluate", "POST", "/sfde/evaluate",
                {"formula": "simple_beam_udl", "params": {"w": 12.5, "L": 8.0}}),
        Request("graphql", "POST", "/graphql", lambda n: {
            "query": "query($g: GraphInput!) { analyze(graph: $g, metrics: [levels]) "
                     "{ levels } }", "variables": {"g": graph_input(sample_variant(n, "gql"))}}),
    ]


async def test_pool_worker_sigkill_under_load(healthy: Topology) -> None:
    compute = healthy["compute"]
    tally = Tally("pool_worker_sigkill")
    pool_work = Request("analyze_in_pool", "POST", "/graph_runtime/analyze", lambda n: {
        "graph": wide_graph(n), "metrics": ["betweenness", "closeness"]})
    killed = []
    async with Load(healthy.url("graphql"), [pool_work, *compute_mix()], tally,
                    concurrency=6, max_requests=600):
        await until_sent(tally, 30)
        with phase(tally, "worker_kills"):
            for _ in range(WORKER_KILLS):
                await asyncio.to_thread(wait_until, lambda: len(pool_workers(compute)) == 2,
                                        30, "a full pool")
                # a busy worker when there is one (the kill then lands on a running task)
                workers = sorted(pool_workers(compute), key=lambda p: not running(p))
                workers[0].send_signal(signal.SIGKILL)
                killed.append(workers[0].pid)
                await until_sent(tally, 25)
        await until_sent(tally, 40)
    wait_until(lambda: len(pool_workers(compute)) == 2, 30, "the pool back to 2 workers")
    retried = compute.output().count("compute worker crashed running")
    tally.notes.update(workers_killed=len(killed), tasks_retried=retried)
    tally.report()
    assert tally.total("failed") == 0, tally.failures
    assert tally.of("analyze_in_pool", "ok") > 0
    assert not set(killed) & {p.pid for p in pool_workers(compute)}


async def test_redis_outage_under_load(healthy: Topology, redis: RedisServer) -> None:
    tally = Tally("redis_outage")
    book = EventBook("redis-outage")
    mix = [*compute_mix(), book.rest_request(),
           Request("event_stats", "GET", "/callback_engine/stats", refusable=True)]
    async with Load(healthy.url("graphql"), mix, tally, concurrency=6, max_requests=5000,
                    observe=book.observe):
        await until_sent(tally, 40)
        with phase(tally, "redis_down"):
            redis.kill()
            await asyncio.sleep(REDIS_DOWN_S)
            refused_while_down = len(book.refused)
            redis.start()
        # until events are acknowledged again (the clusters reconnect by themselves)
        acked = len(book.acked)
        while len(book.acked) < acked + 20 and tally.total() < 5000:
            await until_sent(tally, 10)
    resent = resend_refused(healthy.url("callback_engine"), book)
    stats = wait_drained(healthy.url("callback_engine"))
    tally.notes.update(down_s=REDIS_DOWN_S, events_refused=len(book.refused),
                       events_resent=resent, **verify_exactly_once(redis.url, book))
    tally.report()
    assert tally.total("failed") == 0, tally.failures
    assert refused_while_down > 0, "no event was refused: Redis was never seen down"
    down = tally.summary()["by_phase"]["redis_down"]
    compute_ok = sum(tally.of(r.name, "ok") for r in compute_mix())
    assert down["ok"] > 0 and compute_ok > 0  # compute kept answering while Redis was down
    assert stats["depth"] == 0, stats


async def test_logic_sigkill_with_events_pending(healthy: Topology, redis: RedisServer
                                                 ) -> None:
    tally = Tally("logic_sigkill_exactly_once")
    book = EventBook("logic-kill", per_request=10)
    pulses = PulseCounter(redis.url)
    direct = redis_sync.Redis.from_url(redis.url)
    ws_url = healthy.url("ecm_ws").replace("http://", "ws://") + "/ws"
    stop = asyncio.Event()
    try:
        async with Load(healthy.url("graphql"), [*compute_mix(), book.rest_request()], tally,
                        concurrency=4, max_requests=5000, observe=book.observe):
            sockets = [asyncio.create_task(websocket_submitter(ws_url, book, tally, stop))
                       for _ in range(3)]
            await until_sent(tally, 60)
            async with httpx.AsyncClient(base_url=healthy.url("graphql"), timeout=30) as http:
                await book.backlog(http, BACKLOG)
            with phase(tally, "logic_down"):
                pending = direct.xlen(redislog.STREAM)
                healthy["logic"].kill()
                await until_sent(tally, 40)
                await asyncio.to_thread(lambda: healthy["logic"].start().wait_ready())
            await until_sent(tally, 60)
            stop.set()
            await asyncio.gather(*sockets)
        resent = resend_refused(healthy.url("callback_engine"), book)
        stats = wait_drained(healthy.url("callback_engine"))
        checked = verify_exactly_once(redis.url, book)
        expected = await asyncio.to_thread(pulses_of, redis.url, book)
        seen = await asyncio.to_thread(pulses.wait_for, sum(expected.values()))
        mine = {k: n for k, n in pulses.seen.items() if k[0] in expected}
    finally:
        pulses.close()
        direct.close()
    tally.notes.update(pending_at_kill=pending, events_refused=len(book.refused),
                       events_resent=resent, pulses=sum(mine.values()), **checked)
    tally.report()
    assert pending > 0, "no event was pending at the kill: send more"
    assert tally.total("failed") == 0, tally.failures
    assert tally.of("ws_event", "ok") > 0 and tally.of("events", "ok") > 0
    assert tally.summary()["by_phase"]["logic_down"]["refused"] > 0
    assert stats["depth"] == 0, stats
    assert seen >= sum(expected.values())
    assert set(mine.values()) == {1}, "a pulse was published twice"  # exactly once
    per_event: dict[str, int] = {}
    for event_id, _node in mine:
        per_event[event_id] = per_event.get(event_id, 0) + 1
    assert per_event == {i: n for i, n in expected.items() if n}


def running(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_RUNNING
    except psutil.Error:  # gone meanwhile
        return False


def pulses_of(redis_url: str, book: EventBook) -> dict[str, int]:
    """Event id -> pulses its processing published, from the records in Redis."""
    client = redis_sync.Redis.from_url(redis_url)
    try:
        ids = list(book.acked.values())
        records = client.hmget(redislog.RECORDS, ids)
    finally:
        client.close()
    return {i: orjson.loads(r)["result"]["pulses"] for i, r in zip(ids, records, strict=True)}
