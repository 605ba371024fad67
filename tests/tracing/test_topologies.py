"""One trace per request, the same shape in every topology, exported to a real OTLP/HTTP
receiver (tests/otlp.py) by real `bem serve` processes.

- `POST /run` on dag_alpha in `single` (one process: in-process calls) and in `sprawl`
  (dag_alpha, graph_runtime and sfde each in its own process: HTTP calls) gives one trace
  each, with the same span tree (names, kinds, services, attribute keys), pool tasks and
  cache lookups included.
- An event sent over the WebSocket gives one trace from the message to the pulses
  published, across the callback engine's consumer and three processes sharing a Redis.
- The trace context is stored with the event: a consumer started after the accepting
  process stopped continues the accepting request's trace.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tests.otlp import Receiver, Span, otlp_receiver
from tests.support import ClusterProcess, Topology, base_env, port_plan, redis_server

pytestmark = pytest.mark.slow

# Export every 100 ms instead of every 5 s; every job that could go to the pool goes there.
TRACING = {"otel_bsp_schedule_delay": "100", "inline_budget_ms": "0"}


def traceparent() -> tuple[str, str, str]:
    """A client's own trace context: (header, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def tree(spans: list[Span], parent: str | None) -> list[Any]:
    """The span tree under `parent`: (service, name, kind, attribute keys, children), with
    siblings in a stable order (their own start order differs between topologies)."""
    nodes = [(s.service, s.name, s.kind, sorted(s.attributes), tree(spans, s.span_id))
             for s in spans if s.parent_id == parent]
    return sorted(nodes, key=repr)


def names(node: list[Any]) -> set[str]:
    out = set()
    for service, name, _kind, _keys, children in node:
        out.add(f"{service}:{name}")
        out |= names(children)
    return out


def run_dag(topology: Topology, receiver: Receiver, sample: dict[str, Any]
            ) -> tuple[list[Span], str]:
    header, trace_id, parent = traceparent()
    r = httpx.post(topology.url("dag_alpha") + "/run", json={"graph": sample},
                   headers={"traceparent": header}, timeout=60)
    assert r.status_code == 200, r.text
    # Done once every span has ended: the root is exported last, and its children before.
    receiver.wait_for(lambda _s: any(s.parent_id == parent for s in receiver.trace(trace_id)))
    time.sleep(0.5)  # spans of other processes may still be in their exporter's queue
    return receiver.trace(trace_id), parent


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as rx:
        yield rx


def test_dag_run_is_one_trace_of_the_same_shape_in_single_and_sprawl(
        receiver: Receiver, sample: dict[str, Any]) -> None:
    env = {"otel_exporter_otlp_endpoint": receiver.endpoint, **TRACING}
    with Topology(["single"], **env) as single:
        one, one_parent = run_dag(single, receiver, sample)
    with Topology(["dag_alpha", "graph_runtime", "sfde"], **env) as sprawl:
        nine, nine_parent = run_dag(sprawl, receiver, sample)
    single_tree, sprawl_tree = tree(one, one_parent), tree(nine, nine_parent)
    assert single_tree == sprawl_tree
    # One root, the request; under it the calls, the peers' requests, pool and cache.
    assert len(single_tree) == 1 and single_tree[0][:3] == ("dag_alpha", "POST /run", "server")
    assert {"dag_alpha:graph_runtime.analyze", "graph_runtime:POST /analyze",
            "dag_alpha:sfde.evaluate", "sfde:POST /evaluate", "dag_alpha:cache.lookup",
            "graph_runtime:pool.task", "graph_runtime:pool.execute"} <= names(single_tree)
    # Really one process in one and three in the other, the pool in a worker of its own.
    pids = {s.resource["process.pid"] for s in one}
    assert len(pids) == 1
    assert len({s.resource["process.pid"] for s in nine}) == 3
    worker = next(s for s in one if s.name == "pool.execute")
    assert worker.attributes["bem.pool.worker_pid"] not in pids
    assert {s.resource["bem.cluster"] for s in one} == {"single"}
    assert {s.resource["bem.cluster"] for s in nine} == {"dag_alpha", "graph_runtime", "sfde"}
    lookups = [s for s in one if s.name == "cache.lookup"]
    assert lookups and all(s.attributes["bem.cache.level"] == "miss" for s in lookups)


@pytest.fixture(scope="module")
def optimized(receiver: Receiver) -> Iterator[Topology]:
    with redis_server() as redis, \
            Topology(["compute", "logic", "gateway"], redis_url=redis.url,
                     otel_exporter_otlp_endpoint=receiver.endpoint, **TRACING) as topology:
        yield topology


async def test_an_event_over_the_websocket_is_one_trace_to_its_pulses(
        receiver: Receiver, optimized: Topology) -> None:
    ws_url = optimized.url("ecm_ws").replace("http://", "ws://") + "/ws"
    async with websockets.connect(ws_url) as ws:
        await ws.recv()  # hello
        event = {"idempotency_key": secrets.token_hex(4), "type": "bid", "node": "V01",
                 "magnitude": 2.0}
        await ws.send(orjson.dumps({"type": "event", "id": "e1", "payload": event}).decode())
        ack = orjson.loads(await ws.recv())
        assert ack["type"] == "ack", ack

    def published(spans: list[Span]) -> Span | None:
        return next((s for s in spans if s.name == "pulses.publish"
                     and s.attributes["bem.pulses"] > 0
                     and any(p.name == "callback_engine.process" and p.span_id == s.parent_id
                             and p.attributes["bem.event.id"] == ack["payload"]["event_id"]
                             for p in spans)), None)

    publish = receiver.wait_for(published)
    spans = receiver.trace(publish.trace_id)
    by_id = {s.span_id: s for s in spans}
    chain = [publish]
    while chain[-1].parent_id is not None:
        chain.append(by_id[chain[-1].parent_id])
    assert [(s.service, s.name) for s in reversed(chain)] == [
        ("ecm_ws", "WS /ws message"), ("ecm_ws", "callback_engine.submit_events"),
        ("callback_engine", "POST /events"), ("callback_engine", "callback_engine.process"),
        ("callback_engine", "pulses.publish")]
    assert chain[-1].kind == "server" and chain[0].kind == "producer"
    assert chain[-1].resource["bem.cluster"] == "gateway"
    assert chain[2].resource["bem.cluster"] == "logic"
    # The consumer's batch span (a trace of its own) links to the request that accepted it.
    accepted = chain[2]
    batch = receiver.wait_for(lambda all_spans: next(
        (s for s in all_spans if s.name == "callback_engine.batch"
         and (accepted.trace_id, accepted.span_id) in s.links), None))
    assert batch.trace_id != accepted.trace_id and batch.kind == "consumer"


def test_a_consumer_started_after_a_restart_continues_the_accepting_trace(
        receiver: Receiver) -> None:
    with redis_server() as redis:
        plan = port_plan()
        env = base_env(plan, redis_url=redis.url, otel_exporter_otlp_endpoint=receiver.endpoint,
                       **TRACING)
        # Only the callback engine: the graph it needs (graph_runtime) is not up, so the
        # event is accepted and stays pending in the durable log.
        first = ClusterProcess("callback_engine", env, plan).start().wait_ready()
        header, trace_id, parent = traceparent()
        try:
            r = httpx.post(first.url("callback_engine") + "/events", timeout=30,
                           headers={"traceparent": header},
                           json={"events": [{"idempotency_key": "restart-1", "type": "bid",
                                             "node": "V01", "magnitude": 1.0}]})
            assert r.status_code == 202, r.text
            event_id = r.json()["events"][0]["event_id"]
            accepted = receiver.wait_for(lambda _s: next(
                (s for s in receiver.trace(trace_id) if s.name == "POST /events"), None))
            assert accepted.parent_id == parent
        finally:
            assert first.stop() == 0
            first.cleanup()
        # A new process with its peer: it claims the dead consumer's pending event.
        with Topology(["callback_engine", "graph_runtime"], plan=plan, redis_url=redis.url,
                      otel_exporter_otlp_endpoint=receiver.endpoint, **TRACING) as after:
            pid = after["callback_engine"].process.pid  # type: ignore[union-attr]
            process = receiver.wait_for(lambda _s: next(
                (s for s in receiver.trace(trace_id) if s.name == "callback_engine.process"
                 and s.resource["process.pid"] == pid), None), timeout=40)
            state = httpx.get(after.url("callback_engine") + f"/events/{event_id}").json()
            assert state["status"] == "processed"
    assert process.parent_id == accepted.span_id
    publish = receiver.wait_for(lambda _s: next(
        (s for s in receiver.trace(trace_id) if s.name == "pulses.publish"
         and s.parent_id == process.span_id), None))
    assert publish.attributes["bem.pulses"] > 0
