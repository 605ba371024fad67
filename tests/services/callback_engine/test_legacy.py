"""callback_engine's old /process payloads on a real redis-server: each old callback is a
pulse event in the durable log (answered once appended), processed like any other - its
pulses on the Redis channel - and an identical envelope sent again is accepted once.

Bodies: neon/json_transformer.py transform_for_callback_engine (bem/compat/cases/
process_bodies.json), tests/test_phase2_container_orchestration.py's components.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bem.compat.cases.process import CLIENT_HEADERS, PHASE2_DATA, bodies
from tests.services.callback_engine import test_redis
from tests.services.callback_engine.test_api import finished
from tests.services.callback_engine.test_redis import cluster, drain
from tests.support import RedisServer, old_process, url_of

subscriber = test_redis.subscriber  # an independent subscriber on the Redis pulse channel


async def process(http: httpx.AsyncClient, data: Any, status: int = 200,
                  **envelope: Any) -> dict[str, Any]:
    return await old_process(http, data, status, headers=CLIENT_HEADERS, **envelope)


async def test_old_callbacks_become_durable_events_that_are_processed(
        redis: RedisServer, subscriber: Any) -> None:
    old = bodies()["pipeline"]["callback_engine"]  # 3 combinatorial callbacks, cross_phase
    async with cluster(redis) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "callback_engine"), timeout=30) as ce:
        answer = await process(ce, old)
        assert answer["status"] == "success"
        results = answer["results"]
        assert results["durable"] is True and results["callback_execution_status"] == "accepted"
        assert [e["component_id"] for e in results["events"]] == ["comp_001", "comp_002",
                                                                  "comp_003"]
        states = [await finished(ce, e["event_id"]) for e in results["events"]]
        for state, old_cb in zip(states, old["callbacks"], strict=True):
            assert state["status"] == "processed", state
            assert (state["type"], state["node"]) == ("bid", old_cb["component_id"])
            assert state["graph_id"] == results["graph_id"]
            [cb] = state["result"]["callbacks"]  # the gamma callback ran at the component
            assert cb["callback"] == "combinatorial" and cb["node"] == old_cb["component_id"]
        pulses = await drain(subscriber, 3)
        assert sorted(p["node"] for p in pulses) == ["comp_001", "comp_002", "comp_003"]
        async with httpx.AsyncClient(base_url=url_of(sup, "graph_runtime")) as gr:
            stored = (await gr.get(f"/graphs/{results['graph_id']}")).json()
        node = next(n for n in stored["nodes"] if n["id"] == "comp_001")
        assert node["phase"] == "gamma" and node["attrs"]["length_mm"] == 5000

        again = (await process(ce, old))["results"]  # the same envelope: a retry
        assert [e["event_id"] for e in again["events"]] == \
            [e["event_id"] for e in results["events"]]
        assert all(e["duplicate"] for e in again["events"])
        later = (await process(ce, old, timestamp="2025-06-20T14:36:00.000001"))["results"]
        assert not any(e["duplicate"] for e in later["events"])
        stats = (await ce.get("/stats")).json()
        assert stats["accepted"] == 6 and stats["duplicates"] == 3


async def test_components_and_relational_callbacks(redis: RedisServer) -> None:
    async with cluster(redis) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "callback_engine"), timeout=30) as ce:
        generic = (await process(ce, PHASE2_DATA))["results"]  # phase_2: combinatorial
        assert {e["pulse_type"] for e in generic["events"]} == {"bid"}
        beta = {"callbacks": [{"component_id": "W1", "callback_type": "relational",
                               "phase": "beta",
                               "properties": {"regulatory_strictness": 0.9,
                                              "user_priority_score": 0.4,
                                              "compliance_pass": True}}]}
        [e] = (await process(ce, beta))["results"]["events"]
        assert e["pulse_type"] == "compliancy"
        huge = {"callbacks": [{"component_id": "H1", "callback_type": "combinatorial",
                               "properties": {"count": 2**70}, "relationships": [2**70]}]}
        assert (await process(ce, huge))["results"]["events"][0]["duplicate"] is False
        state = await finished(ce, e["event_id"])
        [cb] = state["result"]["callbacks"]
        # relational at an isolated node: support 1, score 1, compliant against s = 0.9
        assert cb["callback"] == "relational" and cb["strictness"] == 0.9
        assert cb["score"] == 1.0 and cb["compliant"] is True


@pytest.mark.parametrize(("data", "field", "needle"), [
    (bodies()["test_phase2_orchestrator"]["callback_engine"],
     "data.callbacks[0].component_id", "reads component_id, not id"),
    ({"callbacks": [{"component_id": "A", "callback_type": "dag"}]},
     "data.callbacks[0].callback_type", "dag_alpha"),
    ({"callbacks": [{"component_id": "A", "callback_type": "telepathic"}]},
     "data.callbacks[0].callback_type", "known: relational, combinatorial"),
    ({"callbacks": [{"component_id": "A", "callback_type": "relational"},
                    {"component_id": "A", "callback_type": "combinatorial"}]},
     "data.callbacks[1].component_id", "one callback per component"),
    ({"callbacks": []}, "data.callbacks", "at least 1 item"),
    ({"callbacks": [{"component_id": "A", "callback_type": "relational", "x": 1}]},
     "data.callbacks[0].x", "Extra inputs"),
])
async def test_bad_old_callbacks_are_422_and_nothing_is_accepted(
        redis: RedisServer, data: dict[str, Any], field: str, needle: str) -> None:
    async with cluster(redis) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "callback_engine"), timeout=30) as ce:
        error = await process(ce, data, status=422)
        assert error["field"] == field, error
        assert needle in error["message"], error
        assert (await ce.get("/stats")).json()["accepted"] == 0
