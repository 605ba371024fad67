"""The GraphQL schema on a real in-loop `single` cluster: every resolver is an in-process
call, nothing crosses HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from bem.runtime.supervisor import Supervisor
from bem.services.graphql.execution import MAX_DEPTH
from bem.services.graphql.schema import MAX_BATCH
from tests.services.graphql.client import TransportWS, gql
from tests.services.graphql.test_limits import nested
from tests.support import graph_input, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")


def http_calls(sup: Supervisor) -> float:
    """Service calls the gateway made over HTTP (there must be none in `single`)."""
    total = 0.0
    for metric in sup.runtime.metrics.registry.collect():
        for s in metric.samples:
            if s.name == "bem_service_calls_total" and s.labels["transport"] == "http":
                total += s.value
    return total


STORE = """mutation($g: GraphInput!) {
  storeGraph(graph: $g) { graphId nodes edges created } }"""

GRAPH = """query($id: ID!) {
  graph(id: $id) {
    graphId name
    nodes { id phase successors { id } predecessors { id } }
    edges { source target weight }
    node(id: "V02") { id functor attrs }
    analysis(metrics: [summary, dag, levels, critical_path, pagerank]) {
      graphId
      summary { nodes edges isDag sources sinks phases }
      dag { isDag cycle }
      levels
      criticalPath { path length }
      pagerank { node score }
      results
    }
  }
}"""


async def test_store_then_query_a_graph(http: httpx.AsyncClient, cluster: Supervisor,
                                        sample: dict[str, Any]) -> None:
    stored = (await gql(http, STORE, {"g": graph_input(sample)}))["storeGraph"]
    assert stored["nodes"] == 10 and stored["edges"] == 12
    again = (await gql(http, STORE, {"g": graph_input(sample)}))["storeGraph"]
    assert again == {**stored, "created": False}

    graph = (await gql(http, GRAPH, {"id": stored["graphId"]}))["graph"]
    assert graph["graphId"] == stored["graphId"] and graph["name"] == sample["name"]
    nodes = {n["id"]: n for n in graph["nodes"]}
    # Navigation follows the edges: V01 feeds V02 and V04; V09 is fed by V05 and V06.
    assert {s["id"] for s in nodes["V01"]["successors"]} == {"V02", "V04"}
    assert {p["id"] for p in nodes["V09"]["predecessors"]} == {"V05", "V06"}
    assert graph["node"]["functor"] == "evaluate_manufacturing"
    assert graph["node"]["attrs"]["material_strength"] == 355.0

    analysis = graph["analysis"]
    assert analysis["graphId"] == stored["graphId"]
    assert analysis["summary"]["isDag"] is True
    assert analysis["summary"]["phases"] == {"alpha": 3, "beta": 3, "gamma": 4}
    assert analysis["dag"] == {"isDag": True, "cycle": None}
    assert analysis["levels"][0] == ["V01", "V03"]
    assert analysis["criticalPath"] == {"path": ["V01", "V02", "V05", "V09"], "length": 12.0}
    scores = [p["score"] for p in analysis["pagerank"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0)
    # The raw answer is graph_runtime's own, same as REST.
    rest = await http.post("/graph_runtime/analyze", json={
        "graph_id": stored["graphId"],
        "metrics": ["summary", "dag", "levels", "critical_path", "pagerank"]})
    assert rest.json()["results"] == analysis["results"]
    assert http_calls(cluster) == 0


async def test_inline_analysis_and_the_sample(http: httpx.AsyncClient,
                                              sample: dict[str, Any]) -> None:
    sample["edges"].append({"source": "V09", "target": "V01"})
    data = await gql(http, """query($g: GraphInput!) {
        analyze(graph: $g, metrics: [dag, shortest_path],
                options: {source: "V01", target: "V09"}) {
          graphId dag { isDag cycle } shortestPath { path source target } summary { nodes }
        }
        sampleGraph { graphId nodes { id } analysis(metrics: [components]) {
          components { weakCount strongCount } } }
    }""", {"g": graph_input(sample)})
    analysis = data["analyze"]
    assert analysis["dag"]["isDag"] is False
    cycle = analysis["dag"]["cycle"]
    assert cycle[0] == cycle[-1] and "V09" in cycle and "V01" in cycle
    assert analysis["shortestPath"]["path"][0] == "V01"
    assert analysis["summary"] is None  # not requested
    assert data["sampleGraph"]["graphId"] is None
    assert len(data["sampleGraph"]["nodes"]) == 10
    assert data["sampleGraph"]["analysis"]["components"] == {"weakCount": 1,
                                                              "strongCount": 10}


@pytest.mark.parametrize(("query", "variables", "code", "status", "needle"), [
    ('{ graph(id: "nope") { graphId } }', {}, "not_found", 404, "id: no stored graph 'nope'"),
    ('{ analyze(graphId: "nope") { graphId } }', {}, "not_found", 404, "nope"),
    ('{ analyze { graphId } }', {}, "validation_error", 422, "exactly one of graph or graph_id"),
    ('{ analyze(graphId: "x", options: {topK: 0}) { graphId } }', {}, "validation_error",
     422, "options.top_k"),
    ("mutation($g: GraphInput!) { storeGraph(graph: $g) { graphId } }",
     {"g": {"nodes": [{"id": "A", "phase": "delta"}]}}, "validation_error", 422,
     "nodes[0].phase"),
    ("mutation($g: GraphInput!) { storeGraph(graph: $g) { graphId } }",
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
        sampleGraph { nodes { id } }
        graph(id: "missing") { graphId } }"""})
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
    assert len(data["sampleGraph"]["nodes"]) == 10
    too_deep = await gql(http, nested(MAX_DEPTH), expect_errors=True)
    assert "exceeds maximum operation depth" in too_deep["errors"][0]["message"]


async def test_batching_is_bounded(http: httpx.AsyncClient) -> None:
    op = {"query": "{ sampleGraph { name } }"}
    answer = await http.post("/graphql", json=[op] * MAX_BATCH)
    assert answer.status_code == 200
    assert [r["data"]["sampleGraph"]["name"] for r in answer.json()] == \
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
        evaluateExpression(expression: "w * L**2 / 8", variables: {w: 10, L: [4, 6]}) {
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
    assert data["evaluateExpression"] == {"value": None, "values": [20.0, 45.0]}


async def test_formula_errors_name_the_field(http: httpx.AsyncClient) -> None:
    body = await gql(http, '{ formula(name: "perpetuum") { name } }', expect_errors=True)
    ext = body["errors"][0]["extensions"]
    assert (ext["service"], ext["status"], ext["field"]) == ("sfde", 404, "name")
    body = await gql(http, '{ evaluate(formula: "simple_beam_udl", params: {w: -1, L: 6}) '
                           '{ rows } }', expect_errors=True)
    assert body["errors"][0]["extensions"]["status"] == 422
    assert "params.w" in body["errors"][0]["message"]
    body = await gql(http, '{ evaluateExpression(expression: "__import__(1)") { value } }',
                     expect_errors=True)
    assert body["errors"][0]["extensions"]["status"] in (400, 422)


async def test_functor_types(http: httpx.AsyncClient, sample: dict[str, Any]) -> None:
    bad = dict(sample["nodes"][0], attrs={**sample["nodes"][0]["attrs"],
                                          "material_strength": -5})
    data = await gql(http, """query($components: JSON!) {
        functorTypes { digest types { name phase feeds requiredAttributes } }
        functorType(name: "aggregator") { name phase schema }
        validateComponents(components: $components) {
          valid invalid components { index id valid errors { path keyword }
                                     suggestions { path action value } } }
        affinity { domains matrix }
        compatibility(placements: [{functorType: "aggregator", phase: "alpha"}],
                      links: [{source: "stateless_spatial", target: "local_calcs"}]) {
          placements { compatible reason } links { compatible } runsIn }
    }""", {"components": [sample["nodes"][0], bad]})
    types = {t["name"]: t for t in data["functorTypes"]["types"]}
    assert {"stateless_spatial", "local_calcs", "aggregator"} <= set(types)
    assert types["stateless_spatial"]["phase"] == "alpha"
    assert data["functorType"]["phase"] == "gamma"
    assert data["functorType"]["schema"]["$schema"].endswith("draft/2020-12/schema")
    report = data["validateComponents"]
    assert (report["valid"], report["invalid"]) == (1, 1)
    invalid = report["components"][1]
    assert invalid["valid"] is False
    assert invalid["errors"][0]["path"] == "components[1].attrs.material_strength"
    assert invalid["suggestions"] and invalid["suggestions"][0]["action"] == "clamp"
    matrix = data["affinity"]["matrix"]
    assert len(matrix) == len(data["affinity"]["domains"]) and matrix[0][0] == 1.0
    compat = data["compatibility"]
    assert compat["placements"][0]["compatible"] is False
    assert compat["links"] == [{"compatible": True}]
    assert compat["runsIn"]["aggregator"] == "gamma"


async def test_dag_run_query_and_mutation(http: httpx.AsyncClient,
                                          sample: dict[str, Any]) -> None:
    stored = (await gql(http, STORE, {"g": graph_input(sample)}))["storeGraph"]
    fields = """graphId levels manufacturingScore criticalPath { path length }
                nodes { node functor formula level score predecessors }
                evaluations { level functor nodes }"""
    query = (await gql(http, f'query($id: ID!) {{ dagRun(graphId: $id) {{ {fields} }} }}',
                       {"id": stored["graphId"]}))["dagRun"]
    mutation = (await gql(http, f'mutation($g: GraphInput!) {{ runDag(graph: $g) '
                                f'{{ {fields} }} }}', {"g": graph_input(sample)}))["runDag"]
    assert query == mutation  # stored or inline, the same graph runs the same
    assert query["graphId"] == stored["graphId"]
    alpha = {n["node"]: n for n in query["nodes"]}
    assert set(alpha) == {"V01", "V02", "V03"}
    assert alpha["V02"]["predecessors"] == ["V01"] and alpha["V02"]["level"] == 1
    assert 0 < query["manufacturingScore"] <= 1
    assert query["criticalPath"] == {"path": ["V01", "V02", "V05", "V09"], "length": 12.0}
    cycle = dict(sample, edges=[*sample["edges"], {"source": "V02", "target": "V01"}])
    body = await gql(http, "mutation($g: GraphInput!) { runDag(graph: $g) { graphId } }",
                     {"g": graph_input(cycle)}, expect_errors=True)
    assert body["errors"][0]["extensions"]["status"] == 422
    assert "cycle" in body["errors"][0]["message"]


async def test_events_and_their_pulses(http: httpx.AsyncClient, cluster: Supervisor) -> None:
    """An event submitted by the mutation is processed; its pulses reach a subscriber."""
    url = f"ws://127.0.0.1:{cluster.ports['graphql']}/graphql"
    bus = cluster.runtime.bus
    async with TransportWS.connect(url) as ws:
        baseline = bus.subscriber_count("pulses")
        await ws.subscribe("p", """subscription { pulses(types: ["bid"]) {
            eventId pulseType source node value } }""")
        async with asyncio.timeout(10):
            while bus.subscriber_count("pulses") <= baseline:
                await asyncio.sleep(0.01)
        submitted = (await gql(http, """mutation($events: [EventInput!]!) {
            submitEvents(events: $events) { durable events { eventId idempotencyKey
                                                                duplicate } } }""",
            {"events": [{"idempotencyKey": "gql-test-1", "type": "bid", "node": "V07"}]}
        ))["submitEvents"]
        (accepted,) = submitted["events"]
        assert accepted["duplicate"] is False and submitted["durable"] is False
        pulse = (await ws.receive())["payload"]["data"]["pulses"]
        assert pulse["eventId"] == accepted["eventId"] and pulse["pulseType"] == "bid"
        assert pulse["source"] == "V07"

    again = (await gql(http, """mutation { submitEvents(events: [
        {idempotencyKey: "gql-test-1", type: "bid", node: "V07"}]) {
        events { eventId duplicate } } }"""))["submitEvents"]["events"][0]
    assert again == {"eventId": accepted["eventId"], "duplicate": True}
    event = await wait_processed(http, accepted["eventId"])
    assert event["node"] == "V07" and event["attempts"] >= 1
    assert event["result"]["origin"] == "V07"
    stats = (await gql(http, "{ eventStats }"))["eventStats"]
    assert stats["accepted"] >= 1 and stats["duplicates"] >= 1
    bad = await gql(http, """mutation { submitEvents(events: [
        {idempotencyKey: "k", type: "telepathy", node: "V07"}]) { durable } }""",
                    expect_errors=True)
    assert "events[0].type" in bad["errors"][0]["message"]
    missing = await gql(http, '{ event(id: "nope") { status } }', expect_errors=True)
    assert missing["errors"][0]["extensions"]["status"] == 404


async def wait_processed(http: httpx.AsyncClient, event_id: str) -> dict[str, Any]:
    query = """query($id: ID!) { event(id: $id) { eventId status node attempts result } }"""
    async with asyncio.timeout(10):
        while True:
            event = (await gql(http, query, {"id": event_id}))["event"]
            if event["status"] != "pending":
                assert event["status"] == "processed", event
                return event  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


SELECT = {
    "components": [
        {"id": "V01", "options": [
            {"id": "concrete", "cost": 42000, "scores": {"material": 0.7, "cost": 0.8}},
            {"id": "steel", "cost": 61000, "scores": {"material": 0.9, "cost": 0.5}}]},
        {"id": "V02", "options": [
            {"id": "timber", "cost": 30000, "scores": {"material": 0.6, "cost": 0.9}},
            {"id": "steel", "cost": 45000, "scores": {"material": 0.9, "cost": 0.6}}]}],
    "budget": 90000, "weights": {"material": 1.0, "cost": 1.0}}


async def test_optimization(http: httpx.AsyncClient) -> None:
    data = await gql(http, """query($select: JSON!, $params: JSON!) {
        selectOptions(problem: $select) { status optimal objective totalCost
                                           selection { component option cost } }
        optimizeParameters(problem: $params) { status optimal objective variables }
    }""", {"select": SELECT, "params": {
        "formula": "rectangular_section", "output": "area", "sense": "minimize",
        "variables": [{"name": "h", "lower": 50, "upper": 1000}], "fixed": {"b": 200},
        "constraints": [{"formula": "rectangular_section", "output": "section_modulus",
                         "lower": 2.0e6}]}})
    chosen = data["selectOptions"]
    # Weighted scores: V01 concrete 1.5 > steel 1.4; V02 timber and steel both 1.5, and
    # both fit the budget with concrete: the best total is 3.0 with concrete for V01.
    assert chosen["status"] == "optimal" and chosen["optimal"] is True
    assert chosen["objective"] == pytest.approx(3.0) and chosen["totalCost"] <= 90000
    assert chosen["selection"][0] == {"component": "V01", "option": "concrete",
                                      "cost": 42000.0}
    optimum = data["optimizeParameters"]
    assert optimum["optimal"] is True
    # area = b h is smallest where S = b h^2 / 6 reaches 2e6 mm^3: h = sqrt(6 * 2e6 / 200)
    assert optimum["variables"]["h"] == pytest.approx((6 * 2.0e6 / 200) ** 0.5, rel=1e-4)
    assert optimum["objective"] == pytest.approx(200 * (6 * 2.0e6 / 200) ** 0.5, rel=1e-4)
    body = await gql(http, '{ selectOptions(problem: {components: []}) { status } }',
                     expect_errors=True)
    assert body["errors"][0]["extensions"]["service"] == "optimization"
    assert "components" in body["errors"][0]["message"]
