"""dag_alpha over HTTP on a real compute cluster (dag_alpha, sfde, graph_runtime in-loop).

Expected values are recomputed here from the documented formulas (docs/formulas.md), not
taken from the service.
"""

from __future__ import annotations

import copy
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bem.data import sample_project
from bem.runtime.runtime import Runtime
from bem.runtime.supervisor import Supervisor
from tests.support import make_settings, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")
BETA = 0.3
MAX_NODES = 40


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster() -> AsyncIterator[Supervisor]:
    async with run_cluster("compute", make_settings(max_graph_nodes=MAX_NODES)) as sup:
        yield sup


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def dag(cluster: Supervisor) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url_of(cluster, "dag_alpha")) as http:
        yield http


def manufacturing(attrs: dict[str, Any]) -> float:
    """buildability x (1 - exp(-s / 25)), s = strength [MPa] / (density [kg/m3] / 1000)."""
    specific = attrs["material_strength"] / (attrs["component_density"] / 1000)
    return attrs["buildability_score"] * (1 - math.exp(-specific / 25))


def blend(own: float | None, preds: list[float]) -> float | None:
    mean = sum(preds) / len(preds) if preds else None
    if own is None or mean is None:
        return own if mean is None else mean
    return (1 - BETA) * own + BETA * mean


def calls(rt: Runtime, callee: str, transport: str) -> float:
    return sum(s.value for m in rt.metrics.registry.collect() for s in m.samples
               if s.name == "bem_service_calls_total" and s.labels["service"] == "dag_alpha"
               and s.labels["target"] == callee and s.labels["transport"] == transport)


async def test_sample_project(dag: httpx.AsyncClient) -> None:
    sample = sample_project()
    r = await dag.post("/run", json={"graph": sample})
    assert r.status_code == 200, r.text
    body = r.json()
    attrs = {n["id"]: n["attrs"] for n in sample["nodes"]}
    own = {k: manufacturing(attrs[k]) for k in ("V01", "V02", "V03")}
    # V01 and V03 have no alpha predecessor; V02 follows V01 (edge V01 -> V02)
    final = {"V01": own["V01"], "V03": own["V03"], "V02": blend(own["V02"], [own["V01"]])}
    assert sorted(body["nodes"]) == ["V01", "V02", "V03"]
    for node_id, score in final.items():
        node = body["nodes"][node_id]
        assert node["functor"] == "evaluate_manufacturing"
        assert node["formula"] == "manufacturing_score"
        assert node["own_score"] == pytest.approx(own[node_id], abs=1e-11)
        assert node["score"] == pytest.approx(score, abs=1e-11)
        assert node["inputs"] == {"density": attrs[node_id]["component_density"],
                                  "material_strength": attrs[node_id]["material_strength"],
                                  "buildability": attrs[node_id]["buildability_score"]}
    assert body["nodes"]["V02"]["predecessors"] == ["V01"]
    assert body["nodes"]["V02"]["level"] == 1 and body["nodes"]["V03"]["level"] == 0
    # aggregate weighted by material_weight_preference: 0.6, 0.6 (agent 1) and 0.4 (agent 2)
    weights = {"V01": 0.6, "V02": 0.6, "V03": 0.4}
    expected = sum(weights[k] * final[k] for k in final) / sum(weights.values())
    assert body["weights"] == weights
    assert body["manufacturing_score"] == pytest.approx(expected, abs=1e-11)
    assert body["levels"] == [["V01", "V03"], ["V02", "V06"], ["V04", "V05", "V10"],
                              ["V07", "V08", "V09"]]
    assert body["critical_path"] == {"path": ["V01", "V02", "V05", "V09"], "length": 12.0}
    assert body["evaluations"] == [
        {"level": 0, "functor": "evaluate_manufacturing", "formula": "manufacturing_score",
         "nodes": ["V01", "V03"]},
        {"level": 1, "functor": "evaluate_manufacturing", "formula": "manufacturing_score",
         "nodes": ["V02"]}]


def mixed_graph() -> dict[str, Any]:
    """Every alpha functor; a geometry node (no score of its own) passes its predecessor's on;
    the site-fit node sees both; a beta node downstream is not evaluated."""
    return {"nodes": [
        {"id": "A", "functor": "evaluate_manufacturing", "agent": 1,
         "attrs": {"component_density": 2400, "material_strength": 40,
                   "buildability_score": 0.9}},
        {"id": "C", "functor": "evaluate_manufacturing", "agent": 2,
         "attrs": {"component_density": 480, "material_strength": 30,
                   "buildability_score": 0.5}},
        {"id": "G", "functor": "convert_to_geometry", "agent": 1,
         "attrs": {"length_m": 6, "width_m": 0.3, "height_m": 0.5,
                   "component_density": 2400}},
        {"id": "S", "functor": "evaluate_site_fit", "agent": 2,
         "attrs": {"footprint_area_m2": 800, "site_area_m2": 1000, "height_m": 12,
                   "height_limit_m": 15, "max_site_coverage": 0.5}},
        {"id": "B", "phase": "beta", "functor": "check_compliance"},
    ], "edges": [
        {"source": "A", "target": "G", "weight": 2}, {"source": "A", "target": "S"},
        {"source": "G", "target": "S", "weight": 4}, {"source": "C", "target": "S"},
        {"source": "S", "target": "B"},
    ], "agent_coefficients": {"A": {"material_weight_preference": 2.0},
                              "S": {"material_weight_preference": 0.5}}}


async def test_every_functor_and_the_propagation(dag: httpx.AsyncClient) -> None:
    graph = mixed_graph()
    r = await dag.post("/run", json={"graph": graph})
    assert r.status_code == 200, r.text
    body = r.json()
    nodes = body["nodes"]
    attrs = {n["id"]: n.get("attrs") for n in graph["nodes"]}
    a, c = manufacturing(attrs["A"]), manufacturing(attrs["C"])
    # geometry: 6 x 0.3 x 0.5 m prism of 2400 kg/m3
    assert nodes["G"]["outputs"] == pytest.approx({
        "volume": 0.9, "surface": 2 * (6 * 0.3 + 6 * 0.5 + 0.3 * 0.5), "mass": 2160.0,
        "surface_to_volume": 2 * (1.8 + 3 + 0.15) / 0.9}, abs=1e-9)
    assert nodes["G"]["own_score"] is None
    assert nodes["G"]["score"] == pytest.approx(a, abs=1e-11)  # passed on from A
    # site fit: coverage 0.8 over a limit of 0.5 -> 0.5 / 0.8; height within its limit
    fit = 0.5 / 0.8
    assert nodes["S"]["outputs"]["coverage"] == pytest.approx(0.8)
    assert nodes["S"]["outputs"]["fits"] == 0.0
    assert nodes["S"]["own_score"] == pytest.approx(fit, abs=1e-11)
    assert nodes["S"]["predecessors"] == ["A", "C", "G"]
    assert nodes["S"]["score"] == pytest.approx(blend(fit, [a, c, a]), abs=1e-11)
    assert "B" not in nodes
    weights = {"A": 2.0, "C": 1.0, "G": 1.0, "S": 0.5}
    assert body["weights"] == weights
    final = {"A": a, "C": c, "G": a, "S": blend(fit, [a, c, a])}
    assert body["manufacturing_score"] == pytest.approx(
        sum(weights[k] * v for k, v in final.items()) / sum(weights.values()), abs=1e-11)
    assert [(e["level"], e["functor"], e["nodes"]) for e in body["evaluations"]] == [
        (0, "evaluate_manufacturing", ["A", "C"]), (1, "convert_to_geometry", ["G"]),
        (2, "evaluate_site_fit", ["S"])]
    assert body["critical_path"] == {"path": ["A", "G", "S", "B"], "length": 7.0}


async def test_two_functors_in_one_level_are_two_vectorised_calls(
        dag: httpx.AsyncClient, cluster: Supervisor) -> None:
    graph = mixed_graph()
    graph["edges"] = [e for e in graph["edges"] if e["target"] != "G"]  # G joins level 0
    before = calls(cluster.runtime, "sfde", "inprocess")
    body = (await dag.post("/run", json={"graph": graph})).json()
    assert [(e["level"], e["functor"], e["nodes"]) for e in body["evaluations"]] == [
        (0, "convert_to_geometry", ["G"]), (0, "evaluate_manufacturing", ["A", "C"]),
        (1, "evaluate_site_fit", ["S"])]
    assert calls(cluster.runtime, "sfde", "inprocess") - before == 3
    assert body["nodes"]["G"]["score"] is None  # no own score and no alpha predecessor


async def test_stored_graph_and_the_cache(dag: httpx.AsyncClient, cluster: Supervisor) -> None:
    graph = mixed_graph()
    graph["nodes"][0]["attrs"]["buildability_score"] = 0.77  # a graph no other test ran
    async with httpx.AsyncClient(base_url=url_of(cluster, "graph_runtime")) as gr:
        gid = (await gr.post("/graphs", json=graph)).json()["graph_id"]
    inline = await dag.post("/run", json={"graph": graph})
    assert inline.status_code == 200 and inline.json()["graph_id"] == gid
    before = {s: calls(cluster.runtime, s, "inprocess") for s in ("sfde", "graph_runtime")}
    stored = await dag.post("/run", json={"graph_id": gid})
    assert stored.status_code == 200 and stored.json() == inline.json()
    # the whole run came from the cache: only get_graph was called, no analysis, no formula
    assert calls(cluster.runtime, "sfde", "inprocess") == before["sfde"]
    assert calls(cluster.runtime, "graph_runtime", "inprocess") == before["graph_runtime"] + 1
    missing = await dag.post("/run", json={"graph_id": "0" * 32})
    assert missing.status_code == 404 and missing.json()["field"] == "graph_id"


async def test_cycle_is_a_422_naming_it(dag: httpx.AsyncClient) -> None:
    sample = sample_project()
    sample["edges"].append({"source": "V05", "target": "V02"})
    r = await dag.post("/run", json={"graph": sample})
    assert r.status_code == 422
    assert "cycle V02 -> V05 -> V02" in r.json()["message"]
    assert r.json()["details"][0]["cycle"] == ["V02", "V05", "V02"]


def with_change(change: Any) -> dict[str, Any]:
    graph = sample_project()
    change(graph)
    return {"graph": graph}


def set_attr(node: int, name: str, value: Any) -> Any:
    return lambda g: g["nodes"][node]["attrs"].__setitem__(name, value)


@pytest.mark.parametrize(("body", "status", "field", "needle"), [
    (with_change(lambda g: g["nodes"][2]["attrs"].pop("material_strength")), 422,
     "graph.nodes[2].attrs.material_strength", "node V03 (evaluate_manufacturing) needs"),
    (with_change(set_attr(0, "component_density", "heavy")), 422,
     "graph.nodes[0].attrs.component_density", "must be a number, got 'heavy'"),
    (with_change(set_attr(1, "buildability_score", True)), 422,
     "graph.nodes[1].attrs.buildability_score", "must be a number, got 'True'"),
    (with_change(set_attr(1, "material_strength", 10**400)), 422,  # beyond JSON's int64
     "graph.nodes[1].attrs.material_strength.float", "valid number"),
    (with_change(set_attr(1, "buildability_score", 1.5)), 422,
     "graph.nodes[1].attrs.buildability_score", "node V02 (evaluate_manufacturing): 1.5 is "
                                                "above the maximum 1"),
    (with_change(set_attr(2, "component_density", 0)), 422,
     "graph.nodes[2].attrs.component_density", "0 is below the minimum 1 kg/m^3"),
    (with_change(lambda g: g["nodes"][0].__setitem__("functor", "levitate")), 422,
     "graph.nodes[0].functor", "unknown alpha functor 'levitate'"),
    (with_change(lambda g: g["nodes"][0].pop("functor")), 422, "graph.nodes[0].functor",
     "has no functor"),
    (with_change(lambda g: g["agent_coefficients"]["V03"].__setitem__(
        "material_weight_preference", -1)), 422,
     "graph.agent_coefficients.V03.material_weight_preference", ">= 0"),
    (with_change(lambda g: g["nodes"][0].__setitem__("attrs", [])), 422,
     "graph.nodes[0].attrs", "valid dictionary"),
    (with_change(lambda g: g["edges"].append({"source": "V01", "target": "V99"})), 422,
     "graph", "edges[12].target: unknown node 'V99'"),
    (with_change(lambda g: g["nodes"].extend(
        {"id": f"X{i}", "phase": "gamma"} for i in range(MAX_NODES))), 413, "graph.nodes",
     "MAX_GRAPH_NODES"),
    ({}, 422, "body", "exactly one of graph or graph_id"),
    ({"graph": sample_project(), "graph_id": "abc"}, 422, "body", "exactly one of"),
    ({"graph_id": 7}, 422, "graph_id", "valid string"),
    ({"graph": {"nodes": "V01"}}, 422, "graph.nodes", "valid list"),
    ({"graph": sample_project(), "extra": 1}, 422, "extra", "Extra inputs"),
])
async def test_bad_input_names_the_field(dag: httpx.AsyncClient, body: Any, status: int,
                                         field: str, needle: str) -> None:
    r = await dag.post("/run", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert needle in r.json()["message"], r.json()["message"]


async def test_every_missing_attribute_is_listed(dag: httpx.AsyncClient) -> None:
    graph = mixed_graph()
    graph["nodes"][3]["attrs"] = {}
    r = await dag.post("/run", json={"graph": graph})
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["details"]] == [
        f"graph.nodes[3].attrs.{a}" for a in ("footprint_area_m2", "site_area_m2", "height_m",
                                              "height_limit_m", "max_site_coverage")]


async def test_malformed_json_is_400(dag: httpx.AsyncClient) -> None:
    r = await dag.post("/run", content=b'{"graph": ', headers={"content-type":
                                                                "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["message"]


async def test_legacy_envelope(dag: httpx.AsyncClient) -> None:
    sample = sample_project()
    r = await dag.post("/process", json={"data": {"graph": sample}, "timestamp": "t0"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["service"] == "dag_alpha"
    assert body["timestamp"] == "t0" and body["processing_time_ms"] > 0
    assert body["results"] == (await dag.post("/run", json={"graph": sample})).json()
    bad = await dag.post("/process", json={"data": {"graph": {"nodes": []}}})
    assert bad.status_code == 422 and bad.json()["field"] == "data.graph.nodes"


@pytest_asyncio.fixture(loop_scope="module")
async def remote_dag() -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """dag_alpha alone, its peers in another cluster: every call to them is HTTP."""
    async with run_cluster("compute", services=["sfde", "graph_runtime"]) as peers:
        settings = make_settings(sfde_port=peers.ports["sfde"],
                                 graph_runtime_port=peers.ports["graph_runtime"])
        async with run_cluster("dag_alpha", settings) as sup, \
                httpx.AsyncClient(base_url=url_of(sup, "dag_alpha")) as http:
            yield http, sup.runtime


async def test_same_answers_with_remote_peers(
        dag: httpx.AsyncClient, remote_dag: tuple[httpx.AsyncClient, Runtime]) -> None:
    remote, runtime = remote_dag
    for graph in (sample_project(), mixed_graph()):
        here = await dag.post("/run", json={"graph": graph})
        there = await remote.post("/run", json={"graph": graph})
        assert there.status_code == 200 and there.content == here.content
    assert calls(runtime, "sfde", "http") == 2 + 3 and calls(runtime, "sfde", "inprocess") == 0
    cyclic = copy.deepcopy(mixed_graph())
    cyclic["edges"].append({"source": "S", "target": "A"})
    errors = [await client.post("/run", json={"graph": cyclic}) for client in (dag, remote)]
    assert errors[0].json() == errors[1].json()
    assert "the cycle A -> G -> S -> A" in errors[1].json()["message"]
    bad = with_change(set_attr(1, "buildability_score", 1.5))
    errors = [await client.post("/run", json=bad) for client in (dag, remote)]
    assert errors[1].status_code == 422 and errors[0].json() == errors[1].json()
    assert errors[1].json()["field"] == "graph.nodes[1].attrs.buildability_score"
