"""dag_alpha's old /process payloads run the alpha phase for real: each answer equals what
POST /run computes for the same graph, and a bad old payload is a 422 naming its field.

Bodies: neon/json_transformer.py transform_for_dag_alpha (recorded in
bem/compat/cases/process_bodies.json) and frontend/graphql_server.py analyze_component.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bem.compat.cases.process import NODE_COMPONENT, bodies
from bem.data import sample_project
from bem.runtime.supervisor import Supervisor
from tests.support import make_settings, old_process, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster() -> AsyncIterator[Supervisor]:
    async with run_cluster("single", make_settings(workers=0),
                           services=["dag_alpha", "sfde", "graph_runtime", "functor_types"]
                           ) as sup:
        yield sup


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def dag(cluster: Supervisor) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url_of(cluster, "dag_alpha"), timeout=30) as http:
        yield http


async def run(http: httpx.AsyncClient, graph: dict[str, Any]) -> dict[str, Any]:
    r = await http.post("/run", json={"graph": graph})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def part_of_sample(ids: set[str]) -> dict[str, Any]:
    sample = sample_project()
    return {"name": sample["name"], "nodes": [n for n in sample["nodes"] if n["id"] in ids],
            "edges": [e for e in sample["edges"] if e["source"] in ids and e["target"] in ids],
            "agent_coefficients": {k: v for k, v in sample["agent_coefficients"].items()
                                   if k in ids}}


async def test_the_old_dag_request_runs_the_alpha_phase_of_the_project_graph(
        dag: httpx.AsyncClient) -> None:
    old = bodies()["pipeline"]["dag_alpha"]  # node_sequence V01-V03
    answer = await old_process(dag, old)
    assert answer["status"] == "success" and answer["service"] == "dag_alpha"
    results = answer["results"]
    expected = await run(dag, part_of_sample({"V01", "V02", "V03"}))
    assert results["manufacturing_score"] == expected["manufacturing_score"] is not None
    assert {k: results[k] for k in expected} == expected
    assert results["dag_id"] == old["dag_id"] and results["nodes_processed"] == 3
    assert results["dag_execution_status"] == "completed"


async def test_a_sequence_with_beta_nodes_evaluates_its_alpha_ones(dag: httpx.AsyncClient
                                                                   ) -> None:
    ids = ["V01", "V02", "V03", "V04", "V05"]
    results = (await old_process(dag, {"node_sequence": ids}))["results"]
    expected = await run(dag, part_of_sample(set(ids)))
    assert results["manufacturing_score"] == expected["manufacturing_score"]
    assert set(results["nodes"]) == {"V01", "V02", "V03"} and results["nodes_processed"] == 3
    whole = (await old_process(dag, {"dag_id": "all", "node_sequence": []}))["results"]
    assert whole["graph_id"] == (await run(dag, sample_project()))["graph_id"]


async def test_old_components_run_with_the_type_defaults_they_lack(dag: httpx.AsyncClient
                                                                   ) -> None:
    steel = {"id": "S1", "type": "beam", "component_density": 7850, "material_strength": 355}
    results = (await old_process(dag, {"components": [NODE_COMPONENT, steel]}))["results"]
    # the stateless_spatial defaults of functor_types.yaml (C30/37 concrete, neutral)
    defaults = {"component_density": 2400, "material_strength": 30, "buildability_score": 0.5}
    assert results["assumed"] == {"comp_001": defaults, "S1": {"buildability_score": 0.5}}
    graph = {"nodes": [
        {"id": "comp_001", "phase": "alpha", "functor": "evaluate_manufacturing",
         "attrs": defaults},
        {"id": "S1", "phase": "alpha", "functor": "evaluate_manufacturing",
         "attrs": {"component_density": 7850, "material_strength": 355,
                   "buildability_score": 0.5}}]}
    expected = await run(dag, graph)
    assert results["manufacturing_score"] == expected["manufacturing_score"]
    assert results["nodes"]["S1"]["score"] == expected["nodes"]["S1"]["score"]
    assert results["nodes"]["S1"]["inputs"]["density"] == 7850.0
    assert results["nodes_processed"] == 2


@pytest.mark.parametrize(("data", "field", "needle"), [
    ({"node_sequence": ["V01", "comp_001"]}, "data.node_sequence[1]", "the sample project"),
    ({"node_sequence": ["V01"], "callback_type": "relational"}, "data.callback_type",
     "callback_engine"),
    ({"node_sequence": ["V01"], "parameters": {"phase": "beta"}}, "data.parameters.phase",
     "alpha phase only"),
    ({"node_sequence": ["V01"], "parameters": {"execution_mode": "random"}},
     "data.parameters.execution_mode", "deterministic"),
    ({"node_sequence": "V01"}, "data.node_sequence", "list"),
    ({"dag_id": "x", "node_sequence": [], "graph": {}}, "data.graph", "Extra inputs"),
    ({"components": [{"type": "beam"}]}, "data.components[0]", "give id"),
    ({"components": [{"id": "A", "buildability_score": "high"}]},
     "data.components[0].buildability_score", "must be a number"),
    ({"components": [{"id": "A", "buildability_score": 7}]},
     "data.components[0].buildability_score", "above the maximum"),
    ({"components": [{"id": "A"}, {"component_id": "A"}]}, "data.components[1]", "duplicate"),
    ({"components": [{"id": "A"}], "node_sequence": ["B"]}, "data.node_sequence[0]",
     "none of the components"),
    ({"test": "data"}, "data", "knows none of the fields test"),
])
async def test_bad_old_payloads_are_422_naming_the_field(
        dag: httpx.AsyncClient, data: dict[str, Any], field: str, needle: str) -> None:
    error = await old_process(dag, data, status=422)
    assert error["field"] == field, error
    assert needle in error["message"], error
