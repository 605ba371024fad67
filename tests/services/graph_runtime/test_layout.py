"""Layouts beside immutable graphs: in the process without Redis, shared through Redis with it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from bem.services.graph_runtime.layout import KEY_PREFIX
from tests.support import RedisServer, make_settings, run_cluster, url_of


async def test_positions_persist_and_the_graph_stays(sample: dict[str, Any]) -> None:
    async with run_cluster("graph_runtime") as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "graph_runtime")) as gr:
        gid = (await gr.post("/graphs", json=sample)).json()["graph_id"]
        assert (await gr.get("/layout", params={"graph_id": gid})).json() == {
            "graph_id": gid, "positions": {}}
        with sup.runtime.bus.subscribe("graph") as announced:
            moved = await gr.patch("/layout", json={"graph_id": gid, "positions": {
                "V02": {"x": 10.5, "y": -3}, "V01": {"x": 0, "y": 0}}})
            assert moved.status_code == 200, moved.text
            message = await asyncio.wait_for(announced.get(), 5)
        assert message["type"] == "layout_updated" and message["graph_id"] == gid
        assert message["positions"]["V02"] == {"x": 10.5, "y": -3.0}
        again = await gr.patch("/layout", json={"graph_id": gid,
                                                "positions": {"V02": {"x": 1, "y": 2}}})
        assert again.json()["positions"] == {"V01": {"x": 0.0, "y": 0.0},
                                             "V02": {"x": 1.0, "y": 2.0}}
        # Moving nodes is no new graph: the same content, the same id.
        assert (await gr.get(f"/graphs/{gid}")).json()["nodes"] == sorted(
            sample["nodes"], key=lambda n: n["id"])
        assert (await gr.post("/graphs", json=sample)).json()["graph_id"] == gid
        # The sample project (not stored) has a layout of its own.
        await gr.patch("/layout", json={"positions": {"V10": {"x": 5, "y": 5}}})
        assert (await gr.get("/layout")).json() == {
            "graph_id": None, "positions": {"V10": {"x": 5.0, "y": 5.0}}}
        assert "V10" not in (await gr.get("/layout", params={"graph_id": gid})
                             ).json()["positions"]


@pytest.mark.parametrize(("method", "body", "status", "field"), [
    ("PATCH", {"positions": {"V99": {"x": 1, "y": 1}}}, 422, "positions.V99"),
    ("PATCH", {"graph_id": "0" * 32, "positions": {"V01": {"x": 1, "y": 1}}}, 404,
     "graph_id"),
    ("PATCH", {"positions": {"V01": {"x": 1e10, "y": 1}}}, 422, "positions.V01.x"),
    ("PATCH", {"positions": {}}, 422, "positions"),
    ("PATCH", {"positions": {"V01": {"x": 1}}}, 422, "positions.V01.y"),
    ("GET", None, 404, "graph_id"),
])
async def test_bad_layouts_name_the_field(method: str, body: Any, status: int,
                                          field: str) -> None:
    async with run_cluster("graph_runtime") as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "graph_runtime")) as gr:
        if method == "GET":
            answer = await gr.get("/layout", params={"graph_id": "nope"})
        else:
            answer = await gr.patch("/layout", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field


async def test_every_replica_sees_one_layout_in_redis(redis: RedisServer,
                                                      sample: dict[str, Any]) -> None:
    settings = make_settings(redis_url=redis.url)
    async with run_cluster("graph_runtime", settings) as one, \
            run_cluster("graph_runtime", settings) as two, \
            httpx.AsyncClient(base_url=url_of(one, "graph_runtime")) as first, \
            httpx.AsyncClient(base_url=url_of(two, "graph_runtime")) as second:
        gid = (await first.post("/graphs", json=sample)).json()["graph_id"]
        await first.patch("/layout", json={"graph_id": gid,
                                           "positions": {"V01": {"x": 1, "y": 2}}})
        await second.patch("/layout", json={"graph_id": gid,
                                            "positions": {"V03": {"x": 3, "y": 4}}})
        for replica in (first, second):
            layout = (await replica.get("/layout", params={"graph_id": gid})).json()
            assert layout["positions"] == {"V01": {"x": 1.0, "y": 2.0},
                                           "V03": {"x": 3.0, "y": 4.0}}
    raw = aioredis.Redis.from_url(redis.url)
    try:  # data, not cache: no TTL, so no eviction policy takes it
        assert await raw.ttl(KEY_PREFIX + gid) == -1
    finally:
        await raw.aclose()
