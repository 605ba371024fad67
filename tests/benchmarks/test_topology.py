"""The topology benchmark's measuring functions, on real processes and a tiny workload.

They prove the tool measures what it says (every process counted, every request answered,
each cache level confirmed by the servers' own counters); no test asserts a timing.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import httpx
import psutil
import pytest
from benchmarks.launch import Running, launch, private_redis
from benchmarks.load import Call, latency, plan_workload, problem, throughput

from benchmarks import poolcache

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with private_redis() as server:
        yield server.url


@pytest.fixture(scope="module")
def optimized(redis_url: str) -> Iterator[Running]:
    running = launch("optimized", redis_url)
    try:
        yield running
    finally:
        running.stop()


async def _pool_work(running: Running) -> None:
    """Two concurrent analyses big enough for the pool: it starts its forkserver and both
    workers (WORKERS=2) for them."""
    graph = poolcache.generated_graph(300, 1800)
    async with httpx.AsyncClient(timeout=120) as http:
        answers = await asyncio.gather(*(
            http.post(running.url("graph_runtime") + "/analyze",
                      json={"graph": graph, "metrics": ["betweenness"],
                            "options": {"top_k": k}}) for k in (1, 2)))
    assert all(a.status_code == 200 for a in answers)


def test_memory_counts_every_process_of_the_topology(optimized: Running) -> None:
    asyncio.run(_pool_work(optimized))
    pids = [p.process.pid for p in optimized.procs if p.process is not None]
    descendants = sum(len(psutil.Process(pid).children(recursive=True)) for pid in pids)
    memory = optimized.memory()
    assert optimized.startup_s > 0
    assert descendants >= 3  # compute's pool: forkserver and WORKERS=2 workers at least
    assert memory["processes"] == 3 + descendants
    assert 0 < memory["pss_mb"] < memory["rss_mb"]  # the pool shares pages with its parent


def test_workload_is_answered_in_full(optimized: Running) -> None:
    workload = plan_workload(optimized, copies=4)
    assert all(reason for reason in workload.skipped.values())
    assert len(set(workload.ids)) == 1 + 2 * 4  # sample + a fresh copy per request
    series = workload.series()
    assert series and workload.mix
    for calls in series.values():
        samples = asyncio.run(latency(optimized, calls, concurrency=2, warmup=1))
        assert samples.errors == 0, samples.examples
        assert len(samples.latencies_ms) == 3
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    tp = throughput(optimized, workload.mix, seconds=1, concurrency=2)
    assert tp["requests"] > 0 and tp["errors"] == 0, tp
    assert set(tp["statuses"]) == {"200"}
    assert tp["mix"] == [c.name for c in workload.mix]


def test_failures_are_counted_not_hidden(optimized: Running) -> None:
    with httpx.Client() as http:
        missing = Call("x", "dag_alpha", "POST", "/no-such-endpoint", {}).send(http, optimized)
        bad_query = Call("x", "graphql", "POST", "/graphql",
                         {"query": "{ no_such_field }"}).send(http, optimized)
    assert (problem(missing) or "").startswith("404")
    assert (problem(bad_query) or "").startswith("GraphQL errors")
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    bad = [Call("bad", "graphql", "POST", "/graphql", {"query": "{ no_such_field }"}),
           Call("gone", "graphql", "GET", "/graph_runtime/graphs/no-such-graph")]
    tp = throughput(optimized, bad, seconds=1, concurrency=2)
    assert tp["errors"] == tp["requests"] > 0
    assert tp["graphql_errors"] > 0 and "404" in tp["statuses"]


def test_pool_and_cache_levels_are_confirmed_by_the_servers(redis_url: str) -> None:
    graph = poolcache.generated_graph(100, 1950)  # betweenness of 100 x 1950: over INLINE_BUDGET_MS
    replicas = poolcache.Replicas(redis_url, graph)
    try:
        runs = [replicas.pool_batch(workers, concurrent=2) for workers in (1, 2)]
        cache = replicas.cache_levels(keys=2)
    finally:
        replicas.close()
    assert all(r["all_in_pool"] for r in runs), runs
    assert cache["levels_confirmed"], cache["counters"]
    assert cache["counters"]["B"]["redis_hit"] == 2
    summary = poolcache.pool_speedup(runs, 2, graph)
    assert summary["nodes"] == 100 and summary["edges"] == 1950
    assert summary["speedup"] > 0
