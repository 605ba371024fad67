"""Cluster processes sharing one real Redis, and Redis failing under a running cluster."""

from __future__ import annotations

import time
from typing import Any

import httpx
import redis as redis_sync

from tests.support import ClusterProcess, RedisServer, base_env, metric_total, port_plan


def computed(text: str) -> float:
    """Compute jobs this process ran, inline or in its pool."""
    return metric_total(text, "bem_inline_tasks_total") + metric_total(text, "bem_pool_tasks_total")


def test_second_cluster_computes_nothing_the_first_cached(redis: RedisServer,
                                                          sample: dict[str, Any]) -> None:
    first_plan, second_plan = port_plan(), port_plan()
    first = ClusterProcess("compute", base_env(first_plan, redis_url=redis.url), first_plan)
    second = ClusterProcess("compute", base_env(second_plan, redis_url=redis.url), second_plan)
    try:
        first.start(), second.start()
        first.wait_ready(), second.wait_ready()
        request = {"graph": sample, "metrics": ["summary", "pagerank", "critical_path"]}
        a = httpx.post(first.url("graph_runtime") + "/analyze", json=request, timeout=30)
        b = httpx.post(second.url("graph_runtime") + "/analyze", json=request, timeout=30)
        assert a.status_code == b.status_code == 200 and a.json() == b.json()
        first_metrics = httpx.get(first.url("graph_runtime") + "/metrics").text
        second_metrics = httpx.get(second.url("graph_runtime") + "/metrics").text
        assert computed(first_metrics) == 1
        assert computed(second_metrics) == 0
        assert metric_total(second_metrics, "bem_cache_requests_total", level="redis",
                      result="hit") == 1
        # a graph stored through one replica is served by the other
        gid = httpx.post(first.url("graph_runtime") + "/graphs", json=sample).json()["graph_id"]
        assert httpx.get(second.url("graph_runtime") + f"/graphs/{gid}").status_code == 200
    finally:
        first.cleanup()
        second.cleanup()


def wait_status(url: str, wanted: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        report = httpx.get(url + "/health", timeout=5).json()
        if report["status"] == wanted or time.monotonic() > deadline:
            return report  # type: ignore[no-any-return]
        time.sleep(0.1)


def test_redis_stopped_and_restarted_under_the_cluster(redis: RedisServer,
                                                       sample: dict[str, Any]) -> None:
    plan = port_plan()
    proc = ClusterProcess("compute", base_env(plan, redis_url=redis.url), plan)
    url = proc.url("graph_runtime")
    try:
        proc.start().wait_ready()
        assert httpx.get(url + "/health").json()["status"] == "pass"
        redis.kill()
        for seed in range(3):  # keeps answering, computing what it cannot fetch
            sample["name"] = f"while-down-{seed}"
            r = httpx.post(url + "/analyze", json={"graph": sample}, timeout=30)
            assert r.status_code == 200, r.text
        report = wait_status(url, "warn")
        assert report["status"] == "warn"
        assert report["checks"]["redis:connection"][0]["observedValue"] == "unreachable"
        # storing needs Redis (it is the shared store): a clear 503, not a hang or a 500
        down = httpx.post(url + "/graphs", json=sample, timeout=30)
        assert down.status_code == 503 and "Redis" in down.json()["message"]
        assert "retry-after" in down.headers
        redis.start()
        assert wait_status(url, "pass")["status"] == "pass"
        stored = httpx.post(url + "/graphs", json=sample, timeout=30)
        assert stored.status_code == 201
        direct = redis_sync.Redis.from_url(redis.url)
        assert direct.exists("bem:graph:" + stored.json()["graph_id"]) == 1
        direct.close()
    finally:
        proc.cleanup()
