"""The service client: the same answer and the same errors in-process and over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from bem.clusters import PLACEMENT
from bem.errors import NotFound, ServiceUnavailable, ValidationFailed
from bem.runtime.runtime import Runtime
from bem.services.graph_runtime import api as graph_runtime
from tests.support import RedisServer, free_port, make_settings, run_cluster


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Runtime, Runtime]]:
    """graph_runtime served in-loop, and a runtime without services that calls it remotely."""
    async with run_cluster("graph_runtime") as sup:
        remote = Runtime(make_settings(graph_runtime_port=sup.ports["graph_runtime"]),
                         "caller", [], PLACEMENT)
        await remote.start()
        try:
            yield sup.runtime, remote
        finally:
            await remote.close()


def dump(model: Any) -> bytes:
    return orjson.dumps(model.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def calls(rt: Runtime, transport: str) -> float:
    total = 0.0
    for metric in rt.metrics.registry.collect():
        for s in metric.samples:
            if s.name == "bem_service_calls_total" and s.labels["transport"] == transport:
                total += s.value
    return total


async def test_same_answer_in_process_and_over_http(pair: tuple[Runtime, Runtime],
                                                    sample: dict[str, Any]) -> None:
    local, remote = pair
    request = {"graph": sample, "metrics": ["summary", "levels", "critical_path", "pagerank",
                                            "communities", "dag"]}
    here = await local.client.call(graph_runtime.analyze, request)
    there = await remote.client.call(graph_runtime.analyze, request)
    assert type(here) is type(there)
    assert dump(here) == dump(there)
    stored_here = await local.client.call(graph_runtime.store_graph, sample)
    stored_there = await remote.client.call(graph_runtime.get_graph,
                                            graph_id=stored_here.graph_id)
    assert stored_there.graph_id == stored_here.graph_id
    assert calls(local, "inprocess") == 2 and calls(remote, "http") == 2
    for _ in range(5):  # one call after another: one kept-alive connection serves them all
        await remote.client.call(graph_runtime.sample)
    base = local.addresses["graph_runtime"]
    assert remote.client.replicas.upstream.connections(base) == 1


async def test_errors_keep_their_class_and_message(pair: tuple[Runtime, Runtime]) -> None:
    local, remote = pair
    bad = {"graph": {"nodes": [{"id": "A"}], "edges": [{"source": "A", "target": "Z"}]}}
    errors = []
    for rt in (local, remote):
        with pytest.raises(ValidationFailed) as info:
            await rt.client.call(graph_runtime.analyze, bad)
        errors.append((info.value.message, info.value.field))
    assert errors[0] == errors[1]
    assert "edges[0].target: unknown node 'Z'" in errors[0][0]
    for rt in (local, remote):
        with pytest.raises(NotFound, match="graph_id"):
            await rt.client.call(graph_runtime.get_graph, graph_id="absent")


async def test_unreachable_peer_is_a_clear_503() -> None:
    rt = Runtime(make_settings(graph_runtime_port=free_port()), "caller", [], PLACEMENT)
    await rt.start()
    try:
        with pytest.raises(ServiceUnavailable,
                           match="graph_runtime is unavailable: no connection to http://"):
            await rt.client.call(graph_runtime.sample)
    finally:
        await rt.close()


async def test_registry_replicas_and_failover(redis: RedisServer,
                                              sample: dict[str, Any]) -> None:
    """Two registered replicas, one dead: calls fail over and the dead one is ejected."""
    settings = make_settings(redis_url=redis.url)
    async with run_cluster("graph_runtime", settings) as sup:
        rt = Runtime(settings, "caller", [], PLACEMENT)
        await rt.start()
        dead = f"http://127.0.0.1:{free_port()}"
        seconds, _ = await rt.redis.client.time()  # type: ignore[union-attr]
        await rt.redis.client.zadd(  # type: ignore[union-attr]
            "bem:registry:graph_runtime",
            {orjson.dumps({"service": "graph_runtime", "url": dead, "cluster": "ghost",
                           "instance": "ghost"}): (seconds + 60) * 1000})
        try:
            urls = await rt.registry.urls("graph_runtime")
            assert sorted(urls) == sorted([dead, sup.runtime.addresses["graph_runtime"]])
            for _ in range(4):  # non-idempotent too: a refused connection never reached it
                stored = await rt.client.call(graph_runtime.store_graph, sample)
                assert stored.nodes == 10
            assert rt.client.balancer.ejected() == [dead]
        finally:
            await rt.close()


async def test_supervisor_registers_and_deregisters(redis: RedisServer) -> None:
    settings = make_settings(redis_url=redis.url)
    probe = aioredis.Redis.from_url(redis.url)
    try:
        async with run_cluster("compute", settings) as sup:
            keys = sorted(k.decode() for k in await probe.keys("bem:registry:*"))
            assert keys == ["bem:registry:dag_alpha", "bem:registry:graph_runtime",
                            "bem:registry:sfde"]
            seconds, micros = await probe.time()
            now_ms = seconds * 1000 + micros / 1000
            for key in keys:  # one member each, this process, expiring within the TTL
                ((member, expires),) = await probe.zrange(key, 0, -1, withscores=True)
                assert orjson.loads(member)["instance"] == sup.runtime.instance_id
                assert 0 < expires - now_ms <= settings.registry_ttl * 1000
        assert await probe.keys("bem:registry:*") == []  # deregistered: the sets are gone
    finally:
        await probe.aclose()


async def test_a_replica_that_stops_beating_disappears(redis: RedisServer) -> None:
    """No deregistration (as after a SIGKILL): its entry outlives it by REGISTRY_TTL at most."""
    settings = make_settings(redis_url=redis.url, registry_ttl=1.0)
    rt = Runtime(settings, "ghost", [], PLACEMENT)
    await rt.start()
    try:
        await rt.registry.register({"sfde": "http://127.0.0.1:1"}, pid=1)
        assert [e["url"] for e in await rt.registry.entries(["sfde"])] == ["http://127.0.0.1:1"]
        await asyncio.sleep(1.5)  # beating: still there
        assert len(await rt.registry.entries(["sfde"])) == 1
        assert rt.registry._heartbeat is not None
        rt.registry._heartbeat.cancel()  # the process "dies": no more heartbeats
        await asyncio.sleep(1.5)
        assert await rt.registry.entries(["sfde"]) == []
    finally:
        rt.registry._entries = {}
        await rt.close()
