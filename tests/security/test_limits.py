"""Every row of the limits table (docs/security.md): the setting is honoured and the answer is
the documented one, on a real process.

A `single` cluster in embedded mode is started with every size limit set small, so each is
reached with a few bytes; each answer is checked (status, the message naming the setting)
and must be one its operation's OpenAPI lists. The production defaults of the two limits
that guard memory most directly (body size, expression work) are checked on the shared
cluster of conftest.py, which runs with the defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from bem.services.callback_engine.models import MAX_EVENTS_PER_REQUEST, MAX_PAYLOAD_BYTES
from bem.services.graphql.execution import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS
from bem.services.graphql.schema import MAX_BATCH
from bem.settings import Settings
from tests.support import Topology

pytestmark = pytest.mark.slow

SMALL = {"max_body_size": 64 * 1024, "max_graph_nodes": 20, "max_graph_edges": 30,
         "max_stored_graphs": 3, "max_expression_length": 60, "max_columns_rows": 50,
         "max_ws_message_size": 4096, "rate_limit_rps": 0.1, "rate_limit_burst": 20,
         "BEM_API_KEYS": "limits-key,rate-key"}
KEY = {"X-API-Key": "limits-key"}


@pytest.fixture(scope="module")
def small() -> Iterator[Topology]:
    with Topology(["single"], **SMALL) as topo:
        yield topo


def documented(topo: Topology, service: str, method: str, path: str, status: int) -> bool:
    spec = httpx.get(topo.url(service) + "/openapi.json", timeout=10).json()
    return str(status) in spec["paths"][path][method.lower()]["responses"]


def graph(nodes: int, edges: int) -> dict[str, Any]:
    return {"nodes": [{"id": f"n{i}"} for i in range(nodes)],
            "edges": [{"source": f"n{i % nodes}", "target": f"n{(i + 1) % nodes}"}
                      for i in range(edges)]}


def check(answer: httpx.Response, status: int, needle: str) -> None:
    assert answer.status_code == status, answer.text[:300]
    assert needle in answer.json()["message"], answer.text[:300]


@pytest.mark.parametrize("service", ["graph_runtime", "graphql", "ecm_ws"])
def test_body_size(small: Topology, service: str) -> None:
    path = "/graphs" if service == "graph_runtime" else "/graph_runtime/graphs"
    answer = httpx.post(small.url(service) + path, content=b" " * (64 * 1024 + 1),
                        headers={**KEY, "content-type": "application/json"}, timeout=30)
    check(answer, 413, "MAX_BODY_SIZE")


@pytest.mark.parametrize(("nodes", "edges", "setting"), [(21, 20, "MAX_GRAPH_NODES"),
                                                         (20, 31, "MAX_GRAPH_EDGES")])
def test_graph_size(small: Topology, nodes: int, edges: int, setting: str) -> None:
    for base, path in ((small.url("graph_runtime"), "/analyze"),
                       (small.url("graphql"), "/graph_runtime/analyze")):
        check(httpx.post(base + path, json={"graph": graph(nodes, edges)}, headers=KEY,
                         timeout=30), 413, setting)
    assert documented(small, "graph_runtime", "POST", "/analyze", 413)


def test_stored_graphs_in_embedded_mode(small: Topology) -> None:
    url = small.url("graph_runtime") + "/graphs"
    for i in range(3):
        assert httpx.post(url, json=graph(2 + i, 1)).status_code == 201
    check(httpx.post(url, json=graph(9, 1)), 507, "MAX_STORED_GRAPHS")
    assert documented(small, "graph_runtime", "POST", "/graphs", 507)


def test_expression_length_and_rows(small: Topology) -> None:
    url = small.url("sfde") + "/expressions"
    check(httpx.post(url, json={"expression": "x+" * 30 + "x", "variables": {"x": 1}}), 413,
          "MAX_EXPRESSION_LENGTH")
    check(httpx.post(url, json={"expression": "x", "variables": {"x": [1.0] * 51}}), 413,
          "MAX_COLUMNS_ROWS")
    check(httpx.post(small.url("sfde") + "/evaluate", json={
        "formula": "roi", "columns": {"final_value": [2.0] * 51, "cost": [1.0] * 51}}),
        413, "MAX_COLUMNS_ROWS")
    assert documented(small, "sfde", "POST", "/expressions", 413)


def test_events_per_request_and_payload(small: Topology) -> None:
    url = small.url("callback_engine") + "/events"
    event = {"idempotency_key": "k", "type": "bid", "node": "V01"}
    many = httpx.post(url, json={"events": [event] * (MAX_EVENTS_PER_REQUEST + 1)})
    assert many.status_code == 422 and many.json()["field"] == "events"
    big = {**event, "payload": {"blob": "x" * MAX_PAYLOAD_BYTES}}
    check(httpx.post(url, json={"events": [big]}), 422, f"limit of {MAX_PAYLOAD_BYTES}")


def test_websocket_message_size(small: Topology) -> None:
    url = small.url("ecm_ws").replace("http://", "ws://") + "/ws?api_key=limits-key"
    with connect(url, max_size=None) as ws:
        ws.recv(timeout=15)
        ws.send('{"type": "ping", "payload": "' + "x" * 4096 + '"}')
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_graphql_document_and_batch(small: Topology) -> None:
    def ask(body: Any) -> httpx.Response:
        return httpx.post(small.url("graphql") + "/graphql", json=body, headers=KEY,
                          timeout=30)

    inner = "id"
    for _ in range(MAX_DEPTH):
        inner = f"successors {{ {inner} }}"
    deep = ask({"query": f"{{ sampleGraph {{ nodes {{ {inner} }} }} }}"})
    assert "maximum operation depth" in deep.json()["errors"][0]["message"]
    tokens = ask({"query": "{ " + "__typename " * MAX_TOKENS + "}"})
    assert str(MAX_TOKENS) in tokens.json()["errors"][0]["message"]
    aliases = ask({"query": "{ " + " ".join(f"a{i}: __typename"
                                             for i in range(MAX_ALIASES + 1)) + " }"})
    assert "aliases" in aliases.json()["errors"][0]["message"]
    batch = ask([{"query": "{ __typename }"}] * (MAX_BATCH + 1))
    assert batch.status_code == 400 and "Too many operations" in batch.json()["message"]


def test_api_key_and_rate_limit(small: Topology) -> None:
    url = small.url("graphql") + "/sfde/formulas"
    assert httpx.get(url).status_code == 401
    answers = [httpx.get(url, headers={"X-API-Key": "rate-key"}) for _ in range(21)]
    assert [a.status_code for a in answers] == [200] * 20 + [429]
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert "ratelimit" in answers[-1].headers


# --- the production defaults -------------------------------------------------------------
def test_default_body_size_limit(cluster: Topology) -> None:
    limit = Settings.model_fields["max_body_size"].default
    answer = httpx.post(cluster.url("sfde") + "/expressions", content=b" " * (limit + 1),
                        headers={"content-type": "application/json"}, timeout=60)
    check(answer, 413, f"limit of {limit} bytes")


def test_default_expression_work_limit(cluster: Topology) -> None:
    rows = Settings.model_fields["max_columns_rows"].default
    body = '{"expression": "' + "+".join(["x*x"] * 60) + '", "variables": {"x": [' + \
        ",".join(["1"] * rows) + "]}}"
    answer = httpx.post(cluster.url("sfde") + "/expressions", content=body.encode(),
                        headers={"content-type": "application/json"}, timeout=60)
    check(answer, 413, "element operations")
