"""Two compute replicas behind the gateway; one is SIGKILLed mid-run and no idempotent
request fails: REST routing and the GraphQL resolvers retry on the surviving replica."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import ClusterProcess, compute_replicas, redis_server

pytestmark = pytest.mark.slow

CONCURRENCY = 8
BEFORE_KILL = 3.0  # seconds of load on both replicas
AFTER_KILL = 8.0  # longer than the ejection (5 s): the dead replica is re-probed meanwhile


@pytest.fixture(scope="module")
def replicas() -> Iterator[dict[str, ClusterProcess]]:
    with redis_server() as redis, compute_replicas(redis.url) as procs:
        for proc in procs.values():
            proc.wait_ready()
        yield procs


def requests(sample: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Idempotent requests only: GETs, operations marked idempotent, GraphQL queries."""
    analyze = {"graph": sample, "metrics": ["summary", "critical_path"]}
    query = """{ analyze(graphId: "%s", metrics: [levels]) { levels }
                 evaluate(formula: "roi", params: {final_value: 2, cost: 1}) { rows } }"""
    return [("GET", "/graph_runtime/sample", None),
            ("POST", "/graph_runtime/analyze", analyze),
            ("POST", "/sfde/evaluate", {"formula": "simple_beam_udl",
                                        "params": {"w": 10, "L": 6}}),
            ("GET", "/graph_runtime/health", None),
            ("POST", "/graphql", {"query": query})]


async def load(http: httpx.AsyncClient, plan: list[tuple[str, str, Any]], until: float,
               outcomes: Counter[str], failures: list[str], instances: set[str]) -> None:
    i = 0
    while time.monotonic() < until:
        method, path, body = plan[i % len(plan)]
        i += 1
        try:
            answer = await http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            failures.append(f"{method} {path}: {exc!r}")
            continue
        ok = answer.status_code < 400 and "errors" not in (answer.json() or {})
        outcomes["ok" if ok else "failed"] += 1
        if not ok:
            failures.append(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        elif path.endswith("/health"):
            instances.update(n for n in answer.json()["notes"] if n.startswith("instance="))


async def test_no_idempotent_request_fails_when_a_replica_dies(
        replicas: dict[str, ClusterProcess], sample: dict[str, Any]) -> None:
    gateway = replicas["gateway"].url("graphql")
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        stored = await http.post("/graph_runtime/graphs", json=sample)
        plan = requests(sample)
        plan[-1] = ("POST", "/graphql",
                    {"query": plan[-1][2]["query"] % stored.json()["graph_id"]})
        outcomes: Counter[str] = Counter()
        failures: list[str] = []
        before: set[str] = set()
        during: set[str] = set()

        deadline = time.monotonic() + BEFORE_KILL
        await asyncio.gather(*(load(http, plan, deadline, outcomes, failures, before)
                               for _ in range(CONCURRENCY)))
        assert len(before) == 2, f"both replicas should serve before the kill: {before}"

        deadline = time.monotonic() + AFTER_KILL
        workers = [asyncio.create_task(load(http, plan, deadline, outcomes, failures, during))
                   for _ in range(CONCURRENCY)]
        await asyncio.sleep(0.3)  # requests are in flight on both replicas
        await asyncio.to_thread(replicas["compute-b"].kill)
        await asyncio.gather(*workers)
        survivors = {n for _ in range(6) for n in
                     (await http.get("/graph_runtime/health")).json()["notes"]
                     if n.startswith("instance=")}

    print(f"requests: {sum(outcomes.values())} ok={outcomes['ok']} failed={len(failures)}")
    assert failures == []
    assert outcomes["ok"] > 50
    assert len(survivors) == 1 and survivors < before
    # The gateway did meet the dead replica (and took it out of the rotation).
    dead = f":{replicas['compute-b'].plan['graph_runtime']}"
    assert any("ejecting replica" in line and dead in line
               for line in replicas["gateway"].output().splitlines())
