"""sfde's old /process payloads evaluate catalogue formulas per affinity type for real: each
value equals POST /evaluate's for the same inputs, and a bad one is a 422 naming its field.

Bodies: neon/json_transformer.py transform_for_sfde_engine (bem/compat/cases/
process_bodies.json), frontend/graphql_server.py execute_data_affinity and analyze_component.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bem.compat.cases.process import NODE_COMPONENT, affinity_request, bodies
from tests.support import make_settings, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sfde() -> AsyncIterator[httpx.AsyncClient]:
    async with run_cluster("single", make_settings(workers=0), services=["sfde"]) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "sfde"), timeout=30) as http:
        yield http


async def process(http: httpx.AsyncClient, data: Any, status: int = 200) -> dict[str, Any]:
    r = await http.post("/process", json={"data": data, "timestamp": "2025-06-20T14:35:40"})
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def evaluate(http: httpx.AsyncClient, formula: str, params: dict[str, float]
                   ) -> dict[str, float]:
    r = await http.post("/evaluate", json={"formula": formula, "params": params})
    assert r.status_code == 200, r.text
    return r.json()["outputs"]  # type: ignore[no-any-return]


def rows(results: dict[str, Any], affinity: str) -> dict[str, dict[str, Any]]:
    return {r["formula"]: r for r in results["calculations"][affinity]["results"]}


async def test_formulas_run_when_their_inputs_are_given(sfde: httpx.AsyncClient) -> None:
    data = affinity_request("V01", ["structural", "cost", "time"], {
        "w": 12.5, "length_mm": 6000.0, "width_mm": 200.0, "height_mm": 450.0,
        "quantity": 8.0, "unit_price": 140.0, "waste": 0.05, "hours": 30.0, "rate": 55.0,
        "optimistic": 4.0, "most_likely": 6.0, "pessimistic": 11.0})
    answer = await process(sfde, data)
    assert answer["status"] == "success"
    results = answer["results"]
    structural = rows(results, "structural")
    assert set(structural) == {"simple_beam_udl", "rectangular_section"}
    assert structural["simple_beam_udl"]["inputs"] == {"w": 12.5, "L": 6.0}  # mm -> m
    assert structural["simple_beam_udl"]["outputs"] == await evaluate(
        sfde, "simple_beam_udl", {"w": 12.5, "L": 6.0})
    assert structural["rectangular_section"]["outputs"] == await evaluate(
        sfde, "rectangular_section", {"b": 200.0, "h": 450.0})
    missing = {r["formula"]: r["missing"] for r in
               results["calculations"]["structural"]["not_executed"]}
    assert missing["euler_buckling"] == ["E", "I"] and missing["lrfd_combinations"] == ["D"]
    cost = rows(results, "cost")
    material = await evaluate(sfde, "material_cost",
                              {"quantity": 8.0, "unit_price": 140.0, "waste": 0.05})
    labour = await evaluate(sfde, "labour_cost", {"hours": 30.0, "rate": 55.0})
    assert cost["material_cost"]["outputs"] == material
    assert cost["labour_cost"]["outputs"] == labour
    assert results["calculations"]["cost"]["total_cost"] == material["cost"] + labour["cost"]
    assert rows(results, "time")["pert_duration"]["outputs"] == await evaluate(
        sfde, "pert_duration", {"optimistic": 4.0, "most_likely": 6.0, "pessimistic": 11.0})
    assert results["formulas_executed"] == 5 == sum(
        c["formulas_executed"] for c in results["calculations"].values())


async def test_the_orchestrators_request_computes_what_its_components_carry(
        sfde: httpx.AsyncClient) -> None:
    old = bodies()["pipeline"]["sfde"]  # 3 components x structural, cost, energy
    results = (await process(sfde, old))["results"]
    sections = results["calculations"]["structural"]["results"]
    assert [r["component_id"] for r in sections] == ["comp_001", "comp_002", "comp_003"]
    for row, request in zip(sections, old["sfde_requests"][::3], strict=True):
        given = request["input_parameters"]
        assert row["formula"] == "rectangular_section"
        assert row["outputs"] == await evaluate(sfde, "rectangular_section", {
            "b": given["width_mm"], "h": given["height_mm"]})
    assert results["calculations"]["cost"]["total_cost"] is None  # no prices were sent
    assert results["calculations"]["energy"]["results"] == []
    assert results["formulas_executed"] == 3


async def test_old_components_are_requests_per_affinity_type(sfde: httpx.AsyncClient) -> None:
    answer = await process(sfde, {"components": [NODE_COMPONENT], "affinity_types": ["cost"]})
    assert answer["results"]["calculations"]["cost"]["total_cost"] is None
    priced = {"id": "P1", "quantity": 2.0, "unit_price": 50.0}
    results = (await process(sfde, {"components": [priced], "affinity_types": ["cost"]})
               )["results"]
    cost = await evaluate(sfde, "material_cost", {"quantity": 2.0, "unit_price": 50.0})
    assert results["calculations"]["cost"]["total_cost"] == cost["cost"] == 100.0
    default = (await process(sfde, {"components": [priced]}))["results"]
    assert default["affinity_types"] == ["structural", "cost", "energy"]  # the old default


@pytest.mark.parametrize(("data", "field", "needle"), [
    ({"sfde_requests": [{"affinity_type": "magic"}]}, "data.sfde_requests[0].affinity_type",
     "known: structural, cost"),
    ({"sfde_requests": [], "affinity_types": ["cost", "luck"]}, "data.affinity_types",
     "unknown affinity type 'luck'"),
    ({"sfde_requests": [{"affinity_type": "structural", "input_parameters": {"w": -1, "L": 3}}]},
     "data.sfde_requests[0].input_parameters.w", "below the minimum 0"),
    ({"sfde_requests": [{"affinity_type": "structural",
                         "input_parameters": {"w": 1, "length_mm": 50}}]},
     "data.sfde_requests[0].input_parameters.length_mm", "below the minimum 0.1"),
    ({"sfde_requests": [{"affinity_type": "cost",
                         "input_parameters": {"quantity": "lots", "unit_price": 2}}]},
     "data.sfde_requests[0].input_parameters.quantity", "must be a finite number"),
    ({"sfde_requests": [{"affinity_type": "cost",
                         "input_parameters": {"quantity": 10**400, "unit_price": 2}}]},
     "data.sfde_requests[0].input_parameters.quantity", "must be a finite number"),
    ({"sfde_requests": [{"affinity_type": "time", "input_parameters": {
        "optimistic": 5, "most_likely": 3, "pessimistic": 9}}]},
     "data.sfde_requests[0].input_parameters.most_likely", "less than optimistic"),
    ({"sfde_requests": [{"affinity_type": "cost", "input_parms": {}}]},
     "data.sfde_requests[0].input_parms", "Extra inputs"),
    ({"sfde_requests": [], "affinity_types": [], "formula": "roi"}, "data.formula",
     "Extra inputs"),
    ({"components": [{"id": "A", "w": True, "L": 2}], "affinity_types": ["structural"]},
     "data.components[0].w", "must be a finite number"),
    ({"components": [{"id": "A"}], "affinity_types": ["spatial", "astral"]},
     "data.affinity_types[1]", "unknown affinity type 'astral'"),
])
async def test_bad_old_payloads_are_422_naming_the_field(
        sfde: httpx.AsyncClient, data: dict[str, Any], field: str, needle: str) -> None:
    error = await process(sfde, data, status=422)
    assert error["field"] == field, error
    assert needle in error["message"], error
