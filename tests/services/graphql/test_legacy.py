"""The old platform's GraphQL operations on a real in-loop `single` cluster: deprecated in
introspection, answered by the services (checked against the new API and against the
formulas by hand), persistent where the old server only pretended, errors naming the
argument, and counted. The documents are the old clients' own (bem/compat/cases/graphql.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from bem.compat.cases import graphql as old
from bem.runtime.supervisor import Supervisor
from bem.services.sfde.affinity import G
from tests.services.graphql.client import TransportWS, gql
from tests.support import graph_input, metric_total

pytestmark = pytest.mark.asyncio(loop_scope="module")

OLD_QUERIES = ("node", "analyzeComponent", "pulseHistory", "affinityConfiguration")
OLD_MUTATIONS = ("updateNodePosition", "executeDataAffinity", "triggerPulse")
OLD_SUBSCRIPTIONS = ("pulseEvents", "graphUpdates")


def error_of(body: dict[str, Any]) -> dict[str, Any]:
    (error,) = body["errors"]
    return error  # type: ignore[no-any-return]


async def test_old_fields_are_deprecated_in_introspection(http: httpx.AsyncClient) -> None:
    data = await gql(http, """{ __schema {
        queryType { fields(includeDeprecated: true) { name isDeprecated deprecationReason
            args(includeDeprecated: true) { name isDeprecated deprecationReason } } }
        mutationType { fields(includeDeprecated: true) { name isDeprecated deprecationReason } }
        subscriptionType { fields(includeDeprecated: true) { name isDeprecated
                                                             deprecationReason } } } }""")
    schema = data["__schema"]
    roots = {f["name"]: f for kind in ("queryType", "mutationType", "subscriptionType")
             for f in schema[kind]["fields"]}
    for name in (*OLD_QUERIES, *OLD_MUTATIONS, *OLD_SUBSCRIPTIONS):
        assert roots[name]["isDeprecated"], name
        assert roots[name]["deprecationReason"].startswith("use "), name
    # One `graph` field serves both: `id` is new, the old arguments are deprecated.
    args = {a["name"]: a for a in roots["graph"]["args"]}
    assert roots["graph"]["isDeprecated"] is False and args["id"]["isDeprecated"] is False
    assert args["filter"]["isDeprecated"] and args["projectContext"]["isDeprecated"]
    new = [n for n, f in roots.items() if not f["isDeprecated"]]
    assert {"sampleGraph", "recentEvents", "setNodePositions", "pulses"} <= set(new)
    # Without includeDeprecated (the old demo's introspection), the old fields are hidden.
    plain = await gql(http, old.DEMO_INTROSPECTION)
    types = {t["name"]: t for t in plain["__schema"]["types"]}
    assert "executeDataAffinity" not in {f["name"] for f in types["Mutation"]["fields"]}
    assert "type" not in {f["name"] for f in types["Node"]["fields"]}


async def test_the_console_graph_is_the_sample_project(http: httpx.AsyncClient,
                                                       sample: dict[str, Any]) -> None:
    graph = (await gql(http, old.CONSOLE_GRAPH))["graph"]
    assert [n["id"] for n in graph["nodes"]] == [n["id"] for n in sample["nodes"]]
    v01 = graph["nodes"][0]
    # V01's agent weighs material 0.6 (fabrication), cost 0.3, time 0.1.
    assert (v01["type"], v01["primaryFunctor"], v01["secondaryFunctor"]) == (
        "FABRICATION", "FABRICATION", "COST")
    assert v01["coefficients"] == {"structural": None, "cost": 0.3, "energy": None,
                                   "mep": None, "fabrication": 0.6, "time": 0.1}
    assert v01["properties"] == {"material": None, "dimensions": {"volume_m3": 12.5},
                                 "specifications": sample["nodes"][0]["attrs"]}
    assert v01["phase"] == "alpha" and v01["status"] == "active"
    edges = {(e["source"], e["target"]): e for e in graph["edges"]}
    assert set(edges) == {(e["source"], e["target"]) for e in sample["edges"]}
    assert edges[("V01", "V02")] == {"id": "V01->V02", "source": "V01", "target": "V02",
                                     "relationshipType": "dependency", "weight": 5.0,
                                     "properties": {"kind": "dependency", "weight": 5.0}}
    assert graph["metadata"] == {"source": "sample", "graph_id": None,
                                 "name": "BEM sample project", "count": 10, "edges": 12}


async def test_filters_select_nodes_and_their_edges(http: httpx.AsyncClient,
                                                    sample: dict[str, Any]) -> None:
    query = """query($f: NodeFilter, $c: ProjectContextInput) {
        graph(filter: $f, projectContext: $c) { nodes { id } edges { source target } } }"""

    async def ids(f: Any = None, c: Any = None) -> tuple[list[str], list[tuple[str, str]]]:
        g = (await gql(http, query, {"f": f, "c": c}))["graph"]
        return [n["id"] for n in g["nodes"]], [(e["source"], e["target"]) for e in g["edges"]]

    assert await ids({"phases": ["PHASE_1"]}) == (["V01", "V02", "V03"], [("V01", "V02")])
    nodes, edges = await ids({"phases": ["PHASE_2", "PHASE_3"], "nodeIds": ["V04", "V07"]})
    assert (nodes, edges) == (["V04", "V07"], [("V04", "V07")])
    # Every node of the sample has an edge to another phase, except none: V01 feeds V04.
    assert len((await ids({"phases": ["CROSS_PHASE"]}))[0]) == 10
    agent2 = [n["id"] for n in sample["nodes"] if n["agent"] == 2]
    assert (await ids(c={"agentId": "2"}))[0] == agent2
    assert (await ids({"projectContext": {"phase": "phase_3", "agentId": "1"}}))[0] == [
        "V07", "V08"]
    # Agent 2 weighs material and cost alike (0.4): ties go in NodeType order, COST first.
    assert (await ids({"functorTypes": ["COST"]}))[0] == agent2
    assert (await ids({"status": "retired"}))[0] == []
    # A stored graph is the old projectId.
    gid = (await gql(http, "mutation($g: GraphInput!) { storeGraph(graph: $g) { graphId } }",
                     {"g": graph_input(sample)}))["storeGraph"]["graphId"]
    stored = (await gql(http, """query($c: ProjectContextInput) { graph(projectContext: $c)
        { graphId metadata } }""", {"c": {"projectId": gid}}))["graph"]
    assert stored["graphId"] == gid and stored["metadata"]["source"] == "store"


@pytest.mark.parametrize(("document", "variables", "field", "needle"), [
    ('{ graph(projectContext: {projectId: "nope"}) { name } }', {},
     "projectContext.projectId", "projectContext.projectId: no stored graph 'nope'"),
    ('{ graph(filter: {projectContext: {agentId: "two"}}) { name } }', {},
     "filter.projectContext.agentId", "an agent number"),
    ('{ graph(projectContext: {phase: "delta"}) { name } }', {}, "projectContext.phase",
     "alpha, beta, gamma"),
    ('{ graph(id: "a", projectContext: {projectId: "b"}) { name } }', {},
     "projectContext.projectId", "give one"),
    (old.DEMO_ANALYSIS, {"nodeId": "test_component_001"}, "nodeId",
     "no node 'test_component_001' in the sample project"),
    (old.PULSE_HISTORY, {"limit": 0}, "limit", "between 1 and 1000"),
    (old.UPDATE_POSITION, {"id": "test_node_001", "position": {"x": 1, "y": 2}}, "id",
     "no node 'test_node_001'"),
    (old.UPDATE_POSITION, {"id": "V01", "position": {"x": 1e12, "y": 2}}, "position.x",
     "less than or equal to 1000000000"),
    (old.TRIGGER_PULSE, {"pulseType": "FIT_PULSE", "sourceNode": "V01",
                         "targetNode": "test_target_001"}, "targetNode", "test_target_001"),
    (old.CONSOLE_AFFINITY, {"request": {"componentId": "V01", "affinityTypes": []}},
     "request.affinityTypes", "at least one of structural"),
    (old.CONSOLE_AFFINITY, {"request": {"componentId": "V01",
                                        "affinityTypes": ["cost", "acoustic"]}},
     "request.affinityTypes[1]", "'acoustic' is none of"),
    (old.CONSOLE_AFFINITY, {"request": {"componentId": "V01", "affinityTypes": ["cost"],
                                        "parameters": {"unit_price": "cheap"}}},
     "request.parameters.unit_price", "valid number"),
    (old.CONSOLE_AFFINITY, {"request": {"componentId": "V01", "affinityTypes": ["cost"],
                                        "parameters": [1, 2]}},
     "request.parameters", "valid dictionary"),
    (old.CONSOLE_AFFINITY, {"request": {"componentId": "V01", "affinityTypes": ["time"],
                                        "parameters": {"optimistic": 9, "most_likely": 5,
                                                       "pessimistic": 12}}},
     "request.parameters.most_likely", "less than optimistic"),
    (old.CONSOLE_AFFINITY, {"request": {"componentId": "V01", "affinityTypes": ["structural"],
                                        "parameters": {"length_mm": 50}}},
     "request.parameters.length_mm", "below the minimum 0.1 m"),
    (old.CONSOLE_AFFINITY, {"request": {"componentId": "V01",
                                        "affinityTypes": ["fabrication"]}},
     "request.affinityTypes[0]", "the old AffinityAnalysis fields"),
])
async def test_bad_old_inputs_name_the_argument(http: httpx.AsyncClient, document: str,
                                                variables: dict[str, Any], field: str,
                                                needle: str) -> None:
    answer = await http.post("/graphql", json={"query": document, "variables": variables})
    assert answer.status_code == 200, answer.text
    error = error_of(answer.json())
    assert error["extensions"]["field"] == field, error
    assert error["message"].startswith(field) and needle in error["message"], error
    assert error["extensions"]["status"] in (404, 422)


async def test_a_wrong_enum_value_is_a_graphql_error(http: httpx.AsyncClient) -> None:
    body = await gql(http, old.TRIGGER_PULSE, {"pulseType": "fit", "sourceNode": "V01"},
                     expect_errors=True)
    assert "pulseType" in error_of(body)["message"] and body["data"] is None


async def test_positions_persist_per_graph(http: httpx.AsyncClient,
                                           sample: dict[str, Any]) -> None:
    moved = await gql(http, old.UPDATE_POSITION, {"id": "V03", "position": {"x": 150.5,
                                                                            "y": -20}})
    assert moved == {"updateNodePosition": "Updated position for node V03"}
    graph = (await gql(http, old.DEMO_GRAPH))["graph"]
    positions = {n["id"]: n["position"] for n in graph["nodes"]}
    assert positions["V03"] == {"x": 150.5, "y": -20.0}
    # The new API reads and writes the same layout.
    layout = (await gql(http, "{ layout { graphId positions { node x y } } }"))["layout"]
    assert {"node": "V03", "x": 150.5, "y": -20.0} in layout["positions"]
    # A stored graph has its own layout, and moving its nodes leaves its id as it is.
    sample["name"] = "layout test"
    gid = (await gql(http, "mutation($g: GraphInput!) { storeGraph(graph: $g) { graphId } }",
                     {"g": graph_input(sample)}))["storeGraph"]["graphId"]
    placed = (await gql(http, """mutation($id: ID!) { setNodePositions(graphId: $id,
        positions: [{node: "V01", x: 1, y: 2}]) { graphId positions { node x y } } }""",
        {"id": gid}))["setNodePositions"]
    assert placed == {"graphId": gid, "positions": [{"node": "V01", "x": 1.0, "y": 2.0}]}
    stored = (await gql(http, """query($id: ID!) { graph(id: $id) { graphId
        nodes { id position { x y } } } }""", {"id": gid}))["graph"]
    assert stored["graphId"] == gid
    assert {n["id"]: n["position"] for n in stored["nodes"]}["V03"] is None


async def test_affinity_is_sfdes_evaluation(http: httpx.AsyncClient,
                                            sample: dict[str, Any]) -> None:
    request = {"componentId": "V01", "affinityTypes": list(old.AFFINITY_KINDS),
               "executionMode": "symbolic_reasoning",
               "parameters": {**old.OLD_PARAMETERS, "unit_price": 180.0, "hours": 6,
                              "rate": 45, "U": 0.35, "dT": 20, "optimistic": 2,
                              "most_likely": 3, "pessimistic": 7}}
    answer = (await gql(http, old.CONSOLE_AFFINITY, {"request": request})
              )["executeDataAffinity"]
    # sfde POST /affinity (REST through the gateway) for the node's attributes
    attrs = sample["nodes"][0]["attrs"]
    new = (await http.post("/sfde/affinity", json={"requests": [{
        "component_id": "V01", "affinity_types": list(old.AFFINITY_KINDS),
        "parameters": request["parameters"], "attributes": attrs}]})).json()
    for kind, evaluation in new["results"][0]["affinity"].items():
        result = answer[f"{kind}Affinity"]
        assert result["calculationResults"] == evaluation, kind
        assert (result["affinityType"], result["componentId"]) == (kind, "V01")
        assert (result["executionStatus"], result["formulasExecuted"]) == (
            evaluation["status"], evaluation["formulas_executed"])
    # ... which is the formulas, by hand
    density = attrs["component_density"]  # 2400 kg/m3
    volume, length = 1000.0e-6, 2.0  # 1000 cm3, 2000 mm
    dead = density * volume * G / 1000  # kN
    structural = answer["structuralAffinity"]
    assert (structural["executionStatus"], structural["formulasExecuted"]) == ("completed", 2)
    formulas = structural["calculationResults"]["formulas"]
    assert formulas["lrfd_combinations"]["params"]["D"] == pytest.approx(dead)
    assert formulas["lrfd_combinations"]["outputs"]["governing"] == pytest.approx(1.4 * dead)
    w = dead / length  # its own weight along its length
    assert formulas["simple_beam_udl"]["outputs"]["max_moment"] == pytest.approx(
        w * length**2 / 8)
    cost = answer["costAffinity"]["calculationResults"]
    assert cost["formulas"]["material_cost"]["outputs"]["cost"] == pytest.approx(volume * 180)
    assert cost["cost"] == pytest.approx(volume * 180.0 + 6 * 45)
    spatial = answer["spatialAffinity"]
    assert (spatial["executionStatus"], spatial["formulasExecuted"]) == (
        "missing_parameters", 0)
    assert spatial["calculationResults"]["missing"] == {
        "prism_geometry": ["width_m or width_mm", "height_m or height_mm"]}
    # The console's own parameters: only what they allow is evaluated, the rest says why.
    console = (await gql(http, old.CONSOLE_AFFINITY, {"request": {
        **request, "parameters": old.OLD_PARAMETERS}}))["executeDataAffinity"]
    assert console["structuralAffinity"]["executionStatus"] == "completed"
    assert console["costAffinity"]["calculationResults"]["missing"] == {
        "material_cost": ["unit_price"], "labour_cost": ["hours", "rate"]}
    # A beta node has no density: no self-weight to load the structure with.
    beta = (await gql(http, old.CONSOLE_AFFINITY, {"request": {
        **request, "componentId": "V05", "affinityTypes": ["structural"]}}))
    missing = beta["executeDataAffinity"]["structuralAffinity"]["calculationResults"]
    assert missing["missing"]["lrfd_combinations"] == ["density or component_density"]


async def test_component_analysis_is_the_dag_run(http: httpx.AsyncClient) -> None:
    answer = await gql(http, """{ v02: analyzeComponent(nodeId: "V02") {
            structuralScore costEstimate energyEfficiency manufacturingFeasibility }
        v05: analyzeComponent(nodeId: "V05") { structuralScore manufacturingFeasibility }
        priced: analyzeComponent(nodeId: "V01",
                                 parameters: {unit_price: 100, hours: 2, rate: 50}) {
            costEstimate } }""")
    sample = (await http.get("/graph_runtime/sample")).json()  # REST through the gateway
    dag = (await http.post("/dag_alpha/run", json={"graph": sample})).json()["nodes"]
    assert answer["v02"] == {"structuralScore": dag["V02"]["score"], "costEstimate": None,
                             "energyEfficiency": None,
                             "manufacturingFeasibility": dag["V02"]["own_score"]}
    assert answer["v05"] == {"structuralScore": None, "manufacturingFeasibility": None}
    assert answer["priced"]["costEstimate"] == pytest.approx(12.5 * 100 + 2 * 50)


async def test_affinity_configuration_is_the_registry(http: httpx.AsyncClient) -> None:
    data = await gql(http, """{ affinityConfiguration { functorTypes { name dataAffinity
        includedFunctors } availableAffinityTypes }
        functorTypes { types { name description functors } } }""")
    config = data["affinityConfiguration"]
    assert config["availableAffinityTypes"] == list(old.AFFINITY_KINDS)
    assert config["functorTypes"] == [
        {"name": t["name"], "dataAffinity": t["description"], "includedFunctors": t["functors"]}
        for t in data["functorTypes"]["types"]]


async def subscribed(cluster: Supervisor, topic: str, count: int) -> None:
    async with asyncio.timeout(10):
        while cluster.runtime.bus.subscriber_count(topic) < count:
            await asyncio.sleep(0.01)


async def test_a_triggered_pulse_reaches_every_old_reader(http: httpx.AsyncClient,
                                                          cluster: Supervisor) -> None:
    port = cluster.ports["graphql"]
    bus = cluster.runtime.bus
    async with TransportWS.connect(f"ws://127.0.0.1:{port}/graphql") as ws, \
            connect(f"ws://127.0.0.1:{port}/ws/cytoscape") as cytoscape:
        baseline = bus.subscriber_count("pulses")
        await ws.subscribe("old", old.README_SUBSCRIPTION)
        await subscribed(cluster, "pulses", baseline + 1)
        triggered = (await gql(http, old.TRIGGER_PULSE, {
            "pulseType": "BID_PULSE", "sourceNode": "V01", "targetNode": "V04"}))["triggerPulse"]
        assert triggered["pulseType"] == "BID_PULSE" and triggered["status"] == "pending"
        assert triggered["data"]["target_node"] == "V04"
        pulse = (await ws.receive())["payload"]["data"]["pulseEvents"]
        assert pulse["id"] == triggered["id"] and pulse["timestamp"] == triggered["timestamp"]
        assert (pulse["pulseType"], pulse["sourceNode"], pulse["status"]) == (
            "BID_PULSE", "V01", "processed")
        relayed = json.loads(await asyncio.wait_for(cytoscape.recv(), 10))
        assert relayed["type"] == "pulse_event" and relayed["id"] == triggered["id"]
        assert (relayed["pulse_type"], relayed["source_node"]) == ("bid_pulse", "V01")
        assert relayed["data"]["node"] == relayed["target_node"] == pulse["targetNode"]
    history = (await gql(http, old.PULSE_HISTORY, {"limit": 5}))["pulseHistory"]
    mine = next(e for e in history if e["id"] == triggered["id"])
    assert (mine["status"], mine["targetNode"]) == ("processed", "V04")
    assert mine["data"]["result"]["origin"] == "V01"
    new = (await gql(http, "{ recentEvents(limit: 5) { eventId status } }"))["recentEvents"]
    assert {"eventId": triggered["id"], "status": "processed"} in new


async def test_position_updates_stream_to_old_readers(http: httpx.AsyncClient,
                                                      cluster: Supervisor) -> None:
    port = cluster.ports["graphql"]
    async with TransportWS.connect(f"ws://127.0.0.1:{port}/graphql") as ws, \
            connect(f"ws://127.0.0.1:{port}/ws/cytoscape") as cytoscape:
        baseline = cluster.runtime.bus.subscriber_count("graph")
        await ws.subscribe("g", "subscription { graphUpdates }")
        await subscribed(cluster, "graph", baseline + 1)
        await gql(http, old.UPDATE_POSITION, {"id": "V07", "position": {"x": 3, "y": 4}})
        update = json.loads((await ws.receive())["payload"]["data"]["graphUpdates"])
        relayed = json.loads(await asyncio.wait_for(cytoscape.recv(), 10))
    for message in (update, relayed):
        assert message["type"] == "node_position_update" and message["node_id"] == "V07"
        assert message["position"] == {"x": 3.0, "y": 4.0} and message["graph_id"] is None
        assert isinstance(message["timestamp"], str)


async def test_old_operations_are_counted(http: httpx.AsyncClient) -> None:
    def count(text: str, operation: str) -> float:
        return metric_total(text, "bem_legacy_requests_total", service="graphql",
                            operation=operation)

    before = (await http.get("/metrics")).text
    await gql(http, old.CONSOLE_GRAPH)
    await gql(http, '{ graph(id: "x") { name } }', expect_errors=True)  # new: not counted
    await gql(http, "{ affinityConfiguration { availableAffinityTypes } }")
    async with connect(f"ws://{http.base_url.host}:{http.base_url.port}/ws/cytoscape"):
        pass
    after = (await http.get("/metrics")).text
    assert count(after, "graph") == count(before, "graph") + 1
    assert count(after, "affinityConfiguration") == count(before, "affinityConfiguration") + 1
    assert count(after, "ws/cytoscape") == count(before, "ws/cytoscape") + 1
