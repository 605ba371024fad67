"""The GraphQL schema on a real in-loop `single` cluster: every resolver is an in-process
call, nothing crosses HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bem.runtime.supervisor import Supervisor
from bem.services.graphql.schema import MAX_BATCH, MAX_DEPTH
from tests.services.graphql.client import gql
from tests.services.graphql.test_limits import nested
from tests.support import run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster() -> AsyncIterator[Supervisor]:
    async with run_cluster("single") as sup:
        yield sup


@pytest_asyncio.fixture(loop_scope="module")
async def http(cluster: Supervisor) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url_of(cluster, "graphql"), timeout=30) as client:
        yield client


def http_calls(sup: Supervisor) -> float:
    """Service calls the gateway made over HTTP (there must be none in `single`)."""
    total = 0.0
    for metric in sup.runtime.metrics.registry.collect():
        for s in metric.samples:
            if s.name == "bem_service_calls_total" and s.labels["transport"] == "http":
                total += s.value
    return total


STORE = """mutation($g: GraphInput!) {
  store_graph(graph: $g) { graph_id nodes edges created } }"""

GRAPH = """query($id: ID!) {
  graph(id: $id) {
    graph_id name
    nodes { id phase successors { id } predecessors { id } }
    edges { source target weight }
    node(id: "V02") { id functor attrs }
    analysis(metrics: [summary, dag, levels, critical_path, pagerank]) {
      graph_id
      summary { nodes edges is_dag sources sinks phases }
      dag { is_dag cycle }
      levels
      critical_path { path length }
      pagerank { node score }
      results
    }
  }
}"""


async def test_store_then_query_a_graph(http: httpx.AsyncClient, cluster: Supervisor,
                                        sample: dict[str, Any]) -> None:
    stored = (await gql(http, STORE, {"g": sample}))["store_graph"]
    assert stored["nodes"] == 10 and stored["edges"] == 12
    again = (await gql(http, STORE, {"g": sample}))["store_graph"]
    assert again == {**stored, "created": False}

    graph = (await gql(http, GRAPH, {"id": stored["graph_id"]}))["graph"]
    assert graph["graph_id"] == stored["graph_id"] and graph["name"] == sample["name"]
    nodes = {n["id"]: n for n in graph["nodes"]}
    # Navigation follows the edges: V01 feeds V02 and V04; V09 is fed by V05 and V06.
    assert {s["id"] for s in nodes["V01"]["successors"]} == {"V02", "V04"}
    assert {p["id"] for p in nodes["V09"]["predecessors"]} == {"V05", "V06"}
    assert graph["node"]["functor"] == "evaluate_manufacturing"
    assert graph["node"]["attrs"]["material_strength"] == 355.0

    analysis = graph["analysis"]
    assert analysis["graph_id"] == stored["graph_id"]
    assert analysis["summary"]["is_dag"] is True
    assert analysis["summary"]["phases"] == {"alpha": 3, "beta": 3, "gamma": 4}
    assert analysis["dag"] == {"is_dag": True, "cycle": None}
    assert analysis["levels"][0] == ["V01", "V03"]
    assert analysis["critical_path"] == {"path": ["V01", "V02", "V05", "V09"], "length": 12.0}
    scores = [p["score"] for p in analysis["pagerank"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0)
    # The raw answer is graph_runtime's own, same as REST.
    rest = await http.post("/graph_runtime/analyze", json={
        "graph_id": stored["graph_id"],
        "metrics": ["summary", "dag", "levels", "critical_path", "pagerank"]})
    assert rest.json()["results"] == analysis["results"]
    assert http_calls(cluster) == 0


async def test_inline_analysis_and_the_sample(http: httpx.AsyncClient,
                                              sample: dict[str, Any]) -> None:
    sample["edges"].append({"source": "V09", "target": "V01"})
    data = await gql(http, """query($g: GraphInput!) {
        analyze(graph: $g, metrics: [dag, shortest_path],
                options: {source: "V01", target: "V09"}) {
          graph_id dag { is_dag cycle } shortest_path { path source target } summary { nodes }
        }
        sample_graph { graph_id nodes { id } analysis(metrics: [components]) {
          components { weak_count strong_count } } }
    }""", {"g": sample})
    analysis = data["analyze"]
    assert analysis["dag"]["is_dag"] is False
    cycle = analysis["dag"]["cycle"]
    assert cycle[0] == cycle[-1] and "V09" in cycle and "V01" in cycle
    assert analysis["shortest_path"]["path"][0] == "V01"
    assert analysis["summary"] is None  # not requested
    assert data["sample_graph"]["graph_id"] is None
    assert len(data["sample_graph"]["nodes"]) == 10
    assert data["sample_graph"]["analysis"]["components"] == {"weak_count": 1,
                                                              "strong_count": 10}


@pytest.mark.parametrize(("query", "variables", "code", "status", "needle"), [
    ('{ graph(id: "nope") { graph_id } }', {}, "not_found", 404, "graph_id"),
    ('{ analyze(graph_id: "nope") { graph_id } }', {}, "not_found", 404, "nope"),
    ('{ analyze { graph_id } }', {}, "validation_error", 422, "exactly one of graph or graph_id"),
    ('{ analyze(graph_id: "x", options: {top_k: 0}) { graph_id } }', {}, "validation_error",
     422, "options.top_k"),
    ("mutation($g: GraphInput!) { store_graph(graph: $g) { graph_id } }",
     {"g": {"nodes": [{"id": "A", "phase": "delta"}]}}, "validation_error", 422,
     "nodes[0].phase"),
    ("mutation($g: GraphInput!) { store_graph(graph: $g) { graph_id } }",
     {"g": {"nodes": [{"id": "A"}], "edges": [{"source": "A", "target": "B"}]}},
     "validation_error", 422, "edges[0].target"),
])
async def test_service_errors_carry_message_and_code(http: httpx.AsyncClient, query: str,
                                                     variables: dict[str, Any], code: str,
                                                     status: int, needle: str) -> None:
    body = await gql(http, query, variables, expect_errors=True)
    error = body["errors"][0]
    assert needle in error["message"]
    ext = error["extensions"]
    assert (ext["code"], ext["status"], ext["service"]) == (code, status, "graph_runtime")
    assert body["data"] is None


async def test_a_failing_field_leaves_the_others(http: httpx.AsyncClient) -> None:
    answer = await http.post("/graphql", json={"query": """{
        sample_graph { nodes { id } }
        graph(id: "missing") { graph_id } }"""})
    body = answer.json()
    # `graph` is non-null, so its error nulls the whole data; with an alias on a nullable
    # path the sample would survive. Either way the error names the field's path.
    assert body["errors"][0]["path"] == ["graph"]
    assert body["errors"][0]["extensions"]["status"] == 404


async def test_health_is_the_dashboards_report(http: httpx.AsyncClient,
                                               cluster: Supervisor) -> None:
    health = (await gql(http, """{ health { status source clusters { name status missing
        replicas { status pid ready services { name status } } }
        services { name status replicas healthy } } }"""))["health"]
    assert health["status"] in ("pass", "warn")
    (single,) = health["clusters"]
    assert single["name"] == "single" and single["missing"] == []
    (replica,) = single["replicas"]
    assert replica["ready"] is True and len(replica["services"]) == 9
    assert {s["name"] for s in health["services"]} >= {"graphql", "graph_runtime"}
    dashboard = (await http.get(url_of(cluster, "dashboard") + "/cluster-health")).json()
    assert dashboard["status"] == health["status"]
    assert set(dashboard["clusters"]) == {c["name"] for c in health["clusters"]}


async def test_deep_query_within_the_limit_is_answered(http: httpx.AsyncClient) -> None:
    data = await gql(http, nested(MAX_DEPTH - 2))
    assert len(data["sample_graph"]["nodes"]) == 10
    too_deep = await gql(http, nested(MAX_DEPTH), expect_errors=True)
    assert "exceeds maximum operation depth" in too_deep["errors"][0]["message"]


async def test_batching_is_bounded(http: httpx.AsyncClient) -> None:
    op = {"query": "{ sample_graph { name } }"}
    answer = await http.post("/graphql", json=[op] * MAX_BATCH)
    assert answer.status_code == 200
    assert [r["data"]["sample_graph"]["name"] for r in answer.json()] == \
        ["BEM sample project"] * MAX_BATCH
    refused = await http.post("/graphql", json=[op] * (MAX_BATCH + 1))
    assert refused.status_code == 400
    assert refused.json() == {"error": "bad_request",
                              "message": "GraphQL request refused: Too many operations"}
    malformed = await http.post("/graphql", content=b"{nope",
                                headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and "JSON" in malformed.json()["message"]


async def test_formulas_and_their_evaluation(http: httpx.AsyncClient) -> None:
    data = await gql(http, """{
        formulas { name domain parameters { name unit min max default } outputs { name unit } }
        formula(name: "simple_beam_udl") { name reference parameters { name unit } }
        one: evaluate(formula: "simple_beam_udl", params: {w: 10, L: 6}) {
          formula rows outputs { name value values } }
        many: evaluate(formula: "simple_beam_udl", columns: {w: [10, 12.5], L: [6, 4]}) {
          rows outputs { name values } }
        evaluate_expression(expression: "w * L**2 / 8", variables: {w: 10, L: [4, 6]}) {
          value values }
    }""")
    names = {f["name"] for f in data["formulas"]}
    assert {"simple_beam_udl", "euler_buckling", "npv_annuity"} <= names
    assert {p["name"] for p in data["formula"]["parameters"]} == {"w", "L"}
    # simply supported beam under a uniform load: M = w L^2 / 8, V = w L / 2
    one = {o["name"]: o for o in data["one"]["outputs"]}
    assert data["one"]["rows"] is None
    assert one["max_moment"]["value"] == pytest.approx(10 * 6**2 / 8)
    assert one["max_shear"]["value"] == pytest.approx(10 * 6 / 2)
    many = {o["name"]: o["values"] for o in data["many"]["outputs"]}
    assert data["many"]["rows"] == 2
    assert many["max_moment"] == pytest.approx([45.0, 12.5 * 16 / 8])
    assert data["evaluate_expression"] == {"value": None, "values": [20.0, 45.0]}


async def test_formula_errors_name_the_field(http: httpx.AsyncClient) -> None:
    body = await gql(http, '{ formula(name: "perpetuum") { name } }', expect_errors=True)
    ext = body["errors"][0]["extensions"]
    assert (ext["service"], ext["status"], ext["field"]) == ("sfde", 404, "name")
    body = await gql(http, '{ evaluate(formula: "simple_beam_udl", params: {w: -1, L: 6}) '
                           '{ rows } }', expect_errors=True)
    assert body["errors"][0]["extensions"]["status"] == 422
    assert "params.w" in body["errors"][0]["message"]
    body = await gql(http, '{ evaluate_expression(expression: "__import__(1)") { value } }',
                     expect_errors=True)
    assert body["errors"][0]["extensions"]["status"] in (400, 422)
