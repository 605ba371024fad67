"""graph_runtime's old /process payloads: the old graph converted (node_id, source_node /
target_node) and analysed for real - the answer equals POST /analyze of the converted graph -
and a bad old graph is a 422 naming its field.

Bodies: neon/json_transformer.py transform_for_graph_runtime (bem/compat/cases/
process_bodies.json).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bem.compat.cases.process import bodies
from tests.support import make_settings, old_process, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")
GENERAL = ["summary", "components", "dag", "degree_centrality", "pagerank"]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gr() -> AsyncIterator[httpx.AsyncClient]:
    async with run_cluster("single", make_settings(workers=0),
                           services=["graph_runtime"]) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "graph_runtime"), timeout=30) as http:
        yield http


async def analyze(http: httpx.AsyncClient, graph: dict[str, Any], metrics: list[str]
                  ) -> dict[str, Any]:
    r = await http.post("/analyze", json={"graph": graph, "metrics": metrics})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def converted(old: dict[str, Any]) -> dict[str, Any]:
    """The conversion docs/migration.md describes, written out independently."""
    nodes = [{"id": n["node_id"], "phase": n["phase"], "agent": n["agent"],
              "callback": n["callback_type"], "functor": n["trigger_functor"],
              "attrs": {**{k: v for k, v in n["dictionary"].items()
                           if isinstance(v, int | float | str | bool)},
                        "node_label": n["node_label"]}} for n in old["nodes"]]
    edges = [{"source": e["source_node"], "target": e["target_node"], "kind": e["edge_type"],
              "weight": e["weight"]} for e in old["edges"]]
    return {"nodes": nodes, "edges": edges}


async def test_the_orchestrators_graph_is_converted_and_analysed(gr: httpx.AsyncClient
                                                                  ) -> None:
    old = bodies()["pipeline"]["graph_runtime"]
    answer = await old_process(gr, old)
    assert answer["status"] == "success"
    results = answer["results"]
    expected = await analyze(gr, converted(old["graph_data"]), GENERAL)
    assert results["graph_id"] == expected["graph_id"]
    assert results["analysis"] == expected["results"]
    assert (results["nodes"], results["edges"]) == (3, 6)
    # the transformer links every pair both ways: not a DAG, so no levels
    assert results["analysis"]["dag"]["is_dag"] is False and "levels" not in results["analysis"]
    again = await old_process(gr, {"node_data": old["node_data"], "edge_data": old["edge_data"]})
    assert again["results"]["graph_id"] == results["graph_id"]


async def test_a_dag_also_gets_levels_and_the_critical_path(gr: httpx.AsyncClient) -> None:
    old = {"nodes": [{"node_id": "A", "dictionary": {"volume_cm3": 5}},
                     {"node_id": "B", "phase": "beta"}, {"node_id": "C", "phase": "gamma"}],
           "edges": [{"source_node": "A", "target_node": "B", "weight": 2.0},
                     {"source_node": "B", "target_node": "C", "weight": 3.0},
                     {"source_node": "A", "target_node": "C", "weight": 1.0}]}
    results = (await old_process(gr, {"operation_type": "build_and_execute", "graph_data": old,
                                  "parameters": {"graph_type": "networkx"}}))["results"]
    graph = {"nodes": [{"id": "A", "attrs": {"volume_cm3": 5}}, {"id": "B", "phase": "beta"},
                       {"id": "C", "phase": "gamma"}],
             "edges": [{"source": "A", "target": "B", "weight": 2.0},
                       {"source": "B", "target": "C", "weight": 3.0},
                       {"source": "A", "target": "C", "weight": 1.0}]}
    expected = await analyze(gr, graph, [*GENERAL, "levels", "critical_path"])
    assert results["analysis"] == expected["results"]
    assert results["analysis"]["critical_path"] == {"path": ["A", "B", "C"], "length": 5.0}


@pytest.mark.parametrize(("data", "field", "needle"), [
    ({"graph_data": {"nodes": [{"node_id": "A"}],
                     "edges": [{"source_node": "A", "target_node": "Z"}]}},
     "data.graph_data.edges[0].target_node", "unknown node 'Z'"),
    ({"graph_data": {"nodes": [{"node_id": "A"}, {"node_id": "A"}]}},
     "data.graph_data.nodes[1].node_id", "duplicate node 'A'"),
    ({"node_data": [{"node_id": "A"}], "edge_data": [{"source_node": "Q", "target_node": "A"}]},
     "data.edge_data[0].source_node", "unknown node 'Q'"),
    ({"operation_type": "shortest_path", "graph_data": {"nodes": [{"node_id": "A"}]}},
     "data.operation_type", "POST /analyze"),
    ({"graph_data": {"nodes": [{"node_id": "A", "phase": "phase_2"}]}},
     "data.graph_data.nodes[0].phase", "'alpha', 'beta' or 'gamma'"),
    ({"graph_data": {"nodes": [{"id": "A"}]}}, "data.graph_data.nodes[0].node_id", "required"),
    ({"graph_data": {"nodes": [{"node_id": "A"}],
                     "edges": [{"source_node": "A", "target_node": "A", "weight": -1}]}},
     "data.graph_data.edges[0].weight", "greater than or equal to 0"),
    ({"operation_type": "build_and_execute"}, "data", "give graph_data"),
    ({"components": [{"id": "A"}, {"id": "A"}]}, "data.components[1]", "duplicate id"),
])
async def test_bad_old_graphs_are_422_naming_the_field(
        gr: httpx.AsyncClient, data: dict[str, Any], field: str, needle: str) -> None:
    error = await old_process(gr, data, status=422)
    assert error["field"] == field, error
    assert needle in error["message"], error


async def test_a_graph_over_the_limit_is_413_naming_the_old_list() -> None:
    async with run_cluster("single", make_settings(workers=0, max_graph_nodes=2),
                           services=["graph_runtime"]) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "graph_runtime")) as http:
        nodes = [{"node_id": f"N{i}"} for i in range(3)]
        r = await http.post("/process", json={"data": {"graph_data": {"nodes": nodes}}})
    assert r.status_code == 413 and r.json()["field"] == "data.graph_data.nodes", r.text
