"""callback_engine over HTTP on an in-loop cluster with the embedded (in-process) log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bem.data import sample_project
from bem.runtime.supervisor import Supervisor
from bem.services.callback_engine.compute import index_graph, process_event
from tests.support import free_port, make_settings, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_ATTEMPTS = 2


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster() -> AsyncIterator[Supervisor]:
    settings = make_settings(workers=0, callback_max_attempts=MAX_ATTEMPTS,
                             callback_batch_size=4)
    async with run_cluster(settings=settings,
                           services=["graph_runtime", "callback_engine"]) as sup:
        yield sup


@pytest_asyncio.fixture(loop_scope="module")
async def ce(cluster: Supervisor) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url_of(cluster, "callback_engine")) as http:
        yield http


_keys = iter(range(10**9))


def event(kind: str = "bid", node: str = "V01", **extra: Any) -> dict[str, Any]:
    return {"idempotency_key": f"k{next(_keys)}-{time.time_ns()}", "type": kind,
            "node": node, **extra}


async def finished(http: httpx.AsyncClient, event_id: str, timeout: float = 20.0
                   ) -> dict[str, Any]:
    """Poll until the event leaves `pending` (the deadline only bounds a broken run)."""
    deadline = time.monotonic() + timeout
    while True:
        r = await http.get(f"/events/{event_id}")
        assert r.status_code == 200, r.text
        if r.json()["status"] != "pending" or time.monotonic() > deadline:
            return r.json()  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)


async def submit(http: httpx.AsyncClient, *events: dict[str, Any]) -> list[dict[str, Any]]:
    r = await http.post("/events", json={"events": list(events)})
    assert r.status_code == 202, r.text
    return r.json()["events"]  # type: ignore[no-any-return]


async def test_events_are_processed_with_the_graph_maths(ce: httpx.AsyncClient) -> None:
    bid, reject = event("bid", "V01", magnitude=2.0, payload={"agent": 1}), \
        event("reject", "V09")
    r = await ce.post("/events", json={"events": [bid, reject]})
    assert r.status_code == 202 and r.json()["durable"] is False
    accepted = r.json()["events"]
    assert [a["duplicate"] for a in accepted] == [False, False]
    g = index_graph(sample_project(), "sample")
    for sent, a in zip([bid, reject], accepted, strict=True):
        state = await finished(ce, a["event_id"])
        assert state["status"] == "processed" and state["attempts"] == 1, state
        assert state["idempotency_key"] == sent["idempotency_key"]
        expected, _ = process_event(g, a["event_id"], {**sent, "graph_id": None})
        assert state["result"] == expected
    state = await finished(ce, accepted[0]["event_id"])
    assert state["payload"] == {"agent": 1} and state["magnitude"] == 2.0
    assert [c["node"] for c in state["result"]["callbacks"]] == ["V07", "V08", "V09"]


async def test_pulses_are_published_on_the_bus(ce: httpx.AsyncClient,
                                               cluster: Supervisor) -> None:
    with cluster.runtime.bus.subscribe("pulses") as sub:
        [a] = await submit(ce, event("investment", "V03"))
        state = await finished(ce, a["event_id"])
        got = []
        while len(got) < state["result"]["pulses"]:
            msg = await asyncio.wait_for(sub.get(), 10)
            if msg["event_id"] == a["event_id"]:
                got.append(msg)
    assert [(m["node"], m["hop"]) for m in got] == [
        ("V03", 0), ("V05", 1), ("V06", 1), ("V08", 2), ("V09", 2), ("V10", 2)]
    assert all(m["type"] == "pulse" and m["pulse_type"] == "investment" and
               m["source"] == "V03" and m["graph_id"] is None for m in got)
    assert got[3]["callback"] == "combinatorial" and got[3]["outcome"]["peers"] == [
        "V07", "V08", "V09"]


async def test_duplicate_key_is_accepted_once_and_processed_once(
        ce: httpx.AsyncClient, cluster: Supervisor) -> None:
    before = (await ce.get("/stats")).json()
    e = event("fit", "V05")
    with cluster.runtime.bus.subscribe("pulses") as sub:
        first = await submit(ce, e, e)
        again = await submit(ce, {**e, "node": "V06"})  # same key, other content: the original
        assert first[0]["event_id"] == first[1]["event_id"] == again[0]["event_id"]
        assert [first[0]["duplicate"], first[1]["duplicate"], again[0]["duplicate"]] == \
            [False, True, True]
        state = await finished(ce, first[0]["event_id"])
        marker = await submit(ce, event("decay", "V10"))  # published after ours
        await finished(ce, marker[0]["event_id"])
        mine = []
        while not sub.queue.empty():
            msg = sub.queue.get_nowait()
            if msg["event_id"] == first[0]["event_id"]:
                mine.append(msg)
    assert state["node"] == "V05" and len(mine) == state["result"]["pulses"]
    after = (await ce.get("/stats")).json()
    assert after["duplicates"] - before["duplicates"] == 2
    assert after["processed"] - before["processed"] == 2  # ours and the marker


async def test_failing_events_are_parked_after_bounded_retries(ce: httpx.AsyncClient) -> None:
    before = (await ce.get("/stats")).json()
    bad_node, bad_graph = await submit(ce, event("bid", "V99"),
                                       event("bid", "V01", graph_id="0" * 32))
    node_state = await finished(ce, bad_node["event_id"])
    graph_state = await finished(ce, bad_graph["event_id"])
    assert node_state["status"] == graph_state["status"] == "failed"
    assert node_state["attempts"] == graph_state["attempts"] == MAX_ATTEMPTS
    assert node_state["error"] == "node: 'V99' is not a node of graph 'sample'"
    assert "graph_id" in graph_state["error"] and "0" * 32 in graph_state["error"]
    assert node_state["result"] is None
    after = (await ce.get("/stats")).json()
    assert after["failed"] - before["failed"] == 2
    assert (after["depth"], after["lag"], after["pending"]) == (0, 0, 0)


async def test_events_on_a_stored_graph(ce: httpx.AsyncClient, cluster: Supervisor) -> None:
    graph = {"nodes": [{"id": "s", "phase": "alpha"},
                       {"id": "b", "phase": "beta", "attrs": {"regulatory_strictness": 0.2}},
                       {"id": "g", "phase": "gamma", "attrs": {"bid_match_score": 0.5,
                                                              "occupancy_rate": 1.0}}],
             "edges": [{"source": "s", "target": "b"}, {"source": "b", "target": "g"}]}
    async with httpx.AsyncClient(base_url=url_of(cluster, "graph_runtime")) as gr:
        gid = (await gr.post("/graphs", json=graph)).json()["graph_id"]
    [a] = await submit(ce, event("compliancy", "s", graph_id=gid))
    state = await finished(ce, a["event_id"])
    assert state["status"] == "processed" and state["graph_id"] == gid
    [cb] = state["result"]["callbacks"]
    assert cb["node"] == "b" and cb["callback"] == "relational" and cb["compliant"] is True


async def test_stats_health_and_metrics(ce: httpx.AsyncClient) -> None:
    stats = (await ce.get("/stats")).json()
    assert stats["backend"] == "memory" and stats["durable"] is False
    assert (stats["batch_size"], stats["max_attempts"]) == (4, MAX_ATTEMPTS)
    assert stats["accepted"] >= stats["processed"] + stats["failed"]
    health = (await ce.get("/health")).json()
    assert health["status"] == "warn"
    durability = health["checks"]["eventlog:durability"][0]
    assert durability["status"] == "warn" and "REDIS_URL is unset" in durability["output"]
    assert health["checks"]["eventlog:lag"][0]["status"] == "pass"
    metrics = (await ce.get("/metrics")).text
    assert 'bem_events_total{cluster="single",outcome="processed",service="callback_engine"}' \
        in metrics
    assert "bem_event_lag" in metrics


async def test_legacy_envelope(ce: httpx.AsyncClient) -> None:
    e = event("occupancy", "V08")
    r = await ce.post("/process", json={"data": {"events": [e]}, "timestamp": 1700000000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["service"] == "callback_engine"
    [a] = body["results"]["events"]
    assert (await finished(ce, a["event_id"]))["status"] == "processed"
    bad = await ce.post("/process", json={"data": {"events": [{**e, "type": "x"}]}})
    assert bad.status_code == 422 and "data.events[0].type" in bad.json()["message"]


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b"{not json", 400, "malformed JSON"),
    ({}, 422, "events: Field required"),
    ({"events": []}, 422, "events: List should have at least 1 item"),
    ({"events": [{"type": "bid", "node": "V01"}] * 1001}, 422, "events: List should have at most"),
    ({"events": [{"type": "bid", "node": "V01"}]}, 422, "events[0].idempotency_key"),
    ({"events": [{"idempotency_key": "", "type": "bid", "node": "V01"}]}, 422,
     "events[0].idempotency_key"),
    ({"events": [{"idempotency_key": "k" * 129, "type": "bid", "node": "V01"}]}, 422,
     "events[0].idempotency_key"),
    ({"events": [{"idempotency_key": "k", "type": "teleport", "node": "V01"}]}, 422,
     "events[0].type"),
    ({"events": [{"idempotency_key": "k", "type": "bid", "node": ""}]}, 422, "events[0].node"),
    ({"events": [{"idempotency_key": "k", "type": "bid", "node": "V01", "graph_id": ""}]},
     422, "events[0].graph_id"),
    ({"events": [{"idempotency_key": "k", "type": "bid", "node": "V01", "magnitude": 0}]},
     422, "events[0].magnitude"),
    ({"events": [{"idempotency_key": "k", "type": "bid", "node": "V01", "magnitude": 1e9}]},
     422, "events[0].magnitude"),
    ({"events": [{"idempotency_key": "k", "type": "bid", "node": "V01", "magnitude": "x"}]},
     422, "events[0].magnitude"),
    ({"events": [{"idempotency_key": "k", "type": "bid", "node": "V01",
                  "payload": {"blob": "x" * 5000}}]}, 422, "events[0].payload"),
    ({"events": [{"idempotency_key": "k", "type": "bid", "node": "V01", "payload": [1]}]},
     422, "events[0].payload"),
    ({"events": [{"idempotency_key": "k", "type": "bid", "node": "V01", "colour": 1}]},
     422, "events[0].colour"),
    ({"events": "bid"}, 422, "events"),
])
async def test_bad_submissions_name_the_field(ce: httpx.AsyncClient, body: Any, status: int,
                                              needle: str) -> None:
    if isinstance(body, bytes):
        r = await ce.post("/events", content=body, headers={"content-type": "application/json"})
    else:
        r = await ce.post("/events", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["message"], r.json()


@pytest.mark.parametrize("event_id", ["nope", "1-1", "99999999999999-0", "1-2-3", "%20"])
async def test_unknown_event_is_404_naming_it(ce: httpx.AsyncClient, event_id: str) -> None:
    r = await ce.get(f"/events/{event_id}")
    assert r.status_code == 404, r.text
    assert r.json()["field"] == "event_id" and "no event" in r.json()["message"]


async def test_unavailable_graph_runtime_defers_without_counting() -> None:
    port = free_port()
    alone = make_settings(workers=0, graph_runtime_port=port, callback_max_attempts=1)
    async with run_cluster(settings=alone, services=["callback_engine"]) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "callback_engine")) as ce:
        [a] = await submit(ce, event("bid", "V01"))
        deadline = time.monotonic() + 10
        while "retrying" not in (lag := (await ce.get("/health")).json()["checks"][
                "eventlog:lag"][0]).get("output", "") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert lag["status"] == "warn" and "graph_runtime is unavailable" in lag["output"]
        state = (await ce.get(f"/events/{a['event_id']}")).json()
        assert (state["status"], state["attempts"]) == ("pending", 0)  # one attempt allowed
        async with run_cluster(settings=make_settings(workers=0, graph_runtime_port=port),
                               services=["graph_runtime"]):
            state = await finished(ce, a["event_id"])
        assert (state["status"], state["attempts"]) == ("processed", 1)


async def test_recent_events_newest_first(ce: httpx.AsyncClient) -> None:
    sent = await submit(ce, event("bid", "V01"), event("fit", "V02"), event("decay", "V03"))
    for a in sent:
        await finished(ce, a["event_id"])
    r = await ce.get("/events", params={"limit": 3})
    assert r.status_code == 200, r.text
    recent = r.json()["events"]
    # Finished in order of acceptance (one consumer): the last accepted comes first.
    assert [e["event_id"] for e in recent] == [a["event_id"] for a in reversed(sent)]
    assert recent[0] == await finished(ce, sent[-1]["event_id"])
    assert len((await ce.get("/events", params={"limit": 1})).json()["events"]) == 1
    for bad in ("0", "1001", "many"):
        refused = await ce.get("/events", params={"limit": bad})
        assert refused.status_code == 422 and "limit" in refused.text, refused.text
