"""Losing one of two compute replicas behind the gateway, under steady load.

Two compute clusters on different port plans register in one private Redis; logic and the
gateway run beside them. The gateway balances every compute request over both. Then one
replica is stopped:

- SIGTERM: it deregisters, stops accepting and drains: the requests it is running (long
  analyses sent to it directly) complete, it exits 0, and the gateway moves new requests
  to the other replica - no request through the gateway fails;
- SIGKILL: nothing drains; the gateway retries the idempotent requests caught on the dead
  replica on the other one - none of them fails.

tests/services/graphql/test_replicas.py checks the SIGKILL case for REST and GraphQL
queries; here both stops run under the same counted load, with the figures reported.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import httpx
import pytest
import redis as redis_sync

from bem.runtime.registry import EJECT_SECONDS
from tests.faults.support import (
    Load,
    Request,
    Tally,
    phase,
    sample_variant,
    until_sent,
    wait_until,
    wide_graph,
)
from tests.support import (
    ClusterProcess,
    RedisServer,
    compute_replicas,
    graph_input,
    metric_total,
    redis_server,
)

pytestmark = pytest.mark.slow

IN_FLIGHT = 3  # long analyses running on the replica when it is told to stop


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def replicas(redis: RedisServer) -> Iterator[dict[str, ClusterProcess]]:
    with compute_replicas(redis.url, registry_ttl=2, workers=2, inline_budget_ms=0,
                          rate_limit_rps=1_000_000, rate_limit_burst=1_000_000) as procs:
        yield procs


@pytest.fixture
def both(replicas: dict[str, ClusterProcess], redis: RedisServer) -> dict[str, ClusterProcess]:
    """Every process up, and both compute replicas registered (where the gateway looks)."""
    for proc in replicas.values():
        if proc.process is None or proc.process.poll() is not None:
            proc.start()
    for proc in replicas.values():
        proc.wait_ready()
    client = redis_sync.Redis.from_url(redis.url)

    def live() -> int:  # members of the service's sorted set whose expiry is ahead
        seconds, micros = client.time()
        return int(client.zcount("bem:registry:graph_runtime",
                                 f"({seconds * 1000 + micros // 1000}", "+inf"))

    try:
        wait_until(lambda: live() == 2, 30, "both compute replicas registered")
    finally:
        client.close()
    return replicas


def gateway_mix() -> list[Request]:
    """Idempotent compute requests (REST, the legacy envelope, GraphQL), no cache hits."""
    return [
        Request("analyze", "POST", "/graph_runtime/analyze", lambda n: {
            "graph": sample_variant(n, "replica"), "metrics": ["summary", "pagerank"]}),
        Request("get_sample", "GET", "/graph_runtime/sample"),
        Request("sfde_evaluate", "POST", "/sfde/evaluate",
                {"formula": "simple_beam_udl", "params": {"w": 10.0, "L": 6.0}}),
        Request("sfde_legacy", "POST", "/sfde/process", {"data": {
            "formula": "euler_buckling", "params": {"E": 200000.0, "I": 8.0e6, "L": 4.0}}}),
        Request("analyze_pool_legacy", "POST", "/graph_runtime/process", lambda n: {"data": {
            "graph": wide_graph(n), "metrics": ["betweenness"]}}),
        Request("dag_run", "POST", "/dag_alpha/run", lambda n: {
            "graph": sample_variant(n, "replica-dag")}),
        Request("graphql", "POST", "/graphql", lambda n: {
            "query": "query($g: GraphInput!) { analyze(graph: $g, metrics: [levels]) "
                     "{ levels } }",
            "variables": {"g": graph_input(sample_variant(n, "replica-gql"))}}),
    ]


async def long_analyses(proc: ClusterProcess) -> list[asyncio.Task[httpx.Response]]:
    """Start IN_FLIGHT long analyses on `proc` directly; return once all are running."""
    url = proc.url("graph_runtime")
    http = httpx.AsyncClient(base_url=url, timeout=120)
    jobs = [asyncio.create_task(http.post("/analyze", json={
        "graph": wide_graph(1000 + i, n=400, m=1600), "metrics": ["betweenness"]}))
        for i in range(IN_FLIGHT)]
    while metric_total((await http.get("/metrics")).text, "bem_http_requests_in_flight",
                       service="graph_runtime") < IN_FLIGHT + 1:  # + this /metrics request
        await asyncio.sleep(0.02)
    closing = asyncio.gather(*jobs)
    closing.add_done_callback(lambda _f: asyncio.ensure_future(http.aclose()))
    return jobs


async def test_sigterm_of_a_replica_drains_and_the_gateway_moves_on(
        both: dict[str, ClusterProcess]) -> None:
    victim = both["compute-b"]
    tally = Tally("replica_sigterm")
    async with Load(both["gateway"].url("graphql"), gateway_mix(), tally, concurrency=6,
                    max_requests=3000):
        await until_sent(tally, 60)
        jobs = await long_analyses(victim)
        with phase(tally, "draining"):
            victim.signal(signal.SIGTERM)
            answers = await asyncio.gather(*jobs)
            code = await asyncio.to_thread(victim.wait, 60)
        await until_sent(tally, 60)
    tally.notes.update(in_flight_at_sigterm=IN_FLIGHT,
                       in_flight_completed=sum(a.status_code == 200 for a in answers),
                       exit_code=code)
    tally.report()
    assert [a.status_code for a in answers] == [200] * IN_FLIGHT, [a.text for a in answers]
    assert code == 0, victim.output()[-20000:]
    assert tally.total("failed") == 0, tally.failures
    assert tally.summary()["by_phase"]["after"]["ok"] >= 60  # served by the other replica


async def test_sigkill_of_a_replica_fails_no_idempotent_request(
        both: dict[str, ClusterProcess]) -> None:
    tally = Tally("replica_sigkill")
    async with Load(both["gateway"].url("graphql"), gateway_mix(), tally, concurrency=8,
                    max_requests=3000):
        await until_sent(tally, 80)
        with phase(tally, "killed"):
            await asyncio.to_thread(both["compute-b"].kill)
            await asyncio.sleep(EJECT_SECONDS + 1)  # the dead replica is tried again
    ejected = [line for line in both["gateway"].output().splitlines()
               if "ejecting replica" in line and f":{both['compute-b'].plan['sfde']}" in line]
    tally.notes.update(gateway_ejections=len(ejected))
    tally.report()
    assert tally.total("failed") == 0, tally.failures
    assert tally.summary()["by_phase"]["killed"]["ok"] > 0
