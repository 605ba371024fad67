"""The registry's static fallback: used when its name resolves, a prompt 503 when it does not.

With no replica registered, the static BACKEND_*_URL address is the last resort; behind
Docker's DNS a name without containers is forwarded to the host's resolvers, and a request
used to wait on them (10 s seen) before failing. The slow resolver here stands in for those
resolvers (this machine's DNS cannot be made slow); the unknown name is a real lookup.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bem.clusters import PLACEMENT
from bem.errors import ServiceUnavailable
from bem.runtime import registry as registry_module
from bem.runtime.runtime import Runtime
from bem.services.graph_runtime import api as graph_runtime
from bem.services.sfde import api as sfde
from tests.support import RedisServer, make_settings, run_cluster


async def started(**overrides: Any) -> Runtime:
    rt = Runtime(make_settings(**overrides), "caller", [], PLACEMENT)
    await rt.start()
    return rt


async def test_a_name_that_does_not_resolve_is_a_503_naming_it(redis: RedisServer) -> None:
    rt = await started(redis_url=redis.url, backend_compute_url="http://compute-cluster.invalid",
                       graph_runtime_port=5004)
    try:
        with pytest.raises(ServiceUnavailable) as info:
            await rt.client.call(graph_runtime.sample)
        assert "no replica of graph_runtime is registered and its static address " \
               "http://compute-cluster.invalid:5004 does not resolve" in info.value.message
        assert info.value.headers["Retry-After"] == "1"
    finally:
        await rt.close()


async def test_a_slow_resolver_costs_one_bounded_wait_then_none(
        redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []

    async def never_answers(host: str, *_args: object, **_kwargs: object) -> list[Any]:
        lookups.append(host)
        await asyncio.sleep(60)
        return []

    rt = await started(redis_url=redis.url, backend_compute_url="http://compute-cluster")
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", never_answers)
    try:
        began = time.monotonic()
        results = await asyncio.gather(*(rt.client.call(graph_runtime.sample)
                                         for _ in range(20)), return_exceptions=True)
        first = time.monotonic() - began
        began = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="no DNS answer within 1 s"):
            await rt.client.call(sfde.list_formulas)
        again = time.monotonic() - began
    finally:
        await rt.close()
    assert all(isinstance(r, ServiceUnavailable) for r in results), results
    assert lookups == ["compute-cluster"]  # one lookup for all of them, still pending
    # generous bounds: the point is "not the resolver's 60 s", and the second "at once"
    assert first < registry_module.STATIC_RESOLVE_TIMEOUT + 4
    assert again < 2


async def test_a_name_that_resolves_is_used(redis: RedisServer) -> None:
    """Nothing registered (the peer runs without Redis): the static address still serves."""
    async with run_cluster("graph_runtime") as sup:
        rt = await started(redis_url=redis.url, backend_compute_url="http://localhost",
                           graph_runtime_port=sup.ports["graph_runtime"])
        try:
            sample = await rt.client.call(graph_runtime.sample)
            assert len(sample.nodes) == 10
            assert await rt.registry.urls("graph_runtime") == [
                f"http://localhost:{sup.ports['graph_runtime']}"]
        finally:
            await rt.close()
