"""sfde's old /process payloads are POST /affinity in the old shape: each row equals POST
/affinity's (and so POST /evaluate's) for the same inputs, and a bad one is a 422 naming its
old field.

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
from bem.services.sfde.affinity import G
from tests.support import make_settings, old_process, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sfde() -> AsyncIterator[httpx.AsyncClient]:
    async with run_cluster("single", make_settings(workers=0), services=["sfde"]) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "sfde"), timeout=30) as http:
        yield http


async def affinity(http: httpx.AsyncClient, kinds: list[str], attributes: dict[str, Any]
                   ) -> dict[str, Any]:
    """POST /affinity for one component."""
    r = await http.post("/affinity", json={"requests": [
        {"affinity_types": kinds, "attributes": attributes}]})
    assert r.status_code == 200, r.text
    return r.json()["results"][0]["affinity"]  # type: ignore[no-any-return]


def rows(results: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {r["formula"]: r for r in results["calculations"][kind]["results"]}


async def test_formulas_run_when_their_inputs_are_given(sfde: httpx.AsyncClient) -> None:
    given = {"w": 12.5, "length_mm": 6000.0, "quantity": 8.0, "unit_price": 140.0,
             "waste": 0.05, "hours": 30.0, "rate": 55.0, "optimistic": 4.0,
             "most_likely": 6.0, "pessimistic": 11.0}
    answer = await old_process(sfde, affinity_request("V01", ["structural", "cost", "time"], given))
    assert answer["status"] == "success"
    results = answer["results"]
    new = await affinity(sfde, ["structural", "cost", "time"], given)
    for kind in ("structural", "cost", "time"):
        assert {name: (r["inputs"], r["outputs"]) for name, r in rows(results, kind).items()} \
            == {name: (f["params"], f["outputs"])
                for name, f in new[kind]["formulas"].items()}, kind
    structural = results["calculations"]["structural"]
    assert structural["formulas"] == ["lrfd_combinations", "simple_beam_udl"]
    assert rows(results, "structural")["simple_beam_udl"]["inputs"] == {"w": 12.5, "L": 6.0}
    assert structural["not_executed"] == [{  # no density: no self weight for the dead load
        "component_id": "V01", "formula": "lrfd_combinations",
        "missing": ["density or component_density", "volume_m3 or volume_cm3"]}]
    cost = rows(results, "cost")
    assert cost["material_cost"]["outputs"]["cost"] == pytest.approx(8.0 * 140.0 * 1.05)
    assert results["calculations"]["cost"]["total_cost"] == new["cost"]["cost"] == \
        pytest.approx(8.0 * 140.0 * 1.05 + 30.0 * 55.0)
    assert rows(results, "time")["pert_duration"]["outputs"]["expected"] == pytest.approx(
        (4.0 + 4 * 6.0 + 11.0) / 6)
    assert results["formulas_executed"] == 4 == sum(
        c["formulas_executed"] for c in results["calculations"].values())


async def test_the_orchestrators_request_computes_what_its_components_carry(
        sfde: httpx.AsyncClient) -> None:
    old = bodies()["pipeline"]["sfde"]  # 3 components x structural, cost, energy
    results = (await old_process(sfde, old))["results"]
    # The database components have dimensions but neither density nor prices: nothing can
    # be computed, and each type says what to send.
    assert results["formulas_executed"] == 0
    structural = results["calculations"]["structural"]["not_executed"]
    assert [(r["component_id"], r["formula"]) for r in structural] == [
        (c, f) for c in ("comp_001", "comp_002", "comp_003")
        for f in ("lrfd_combinations", "simple_beam_udl")]
    assert structural[0]["missing"] == ["density or component_density"]
    cost = results["calculations"]["cost"]
    assert cost["total_cost"] is None
    assert cost["not_executed"][0]["missing"] == ["unit_price"]
    # ... and with a density and a price, the same components are computed.
    for request in old["sfde_requests"]:
        request["input_parameters"].update(density=7850.0, unit_price=900.0)
    priced = (await old_process(sfde, old))["results"]
    comp_001 = old["sfde_requests"][0]["input_parameters"]  # 5000 x 300 x 400 mm, 0.6 m3
    beam = priced["calculations"]["structural"]["results"][1]
    assert (beam["component_id"], beam["formula"]) == ("comp_001", "simple_beam_udl")
    self_weight = 7850.0 * 0.6 * G / 1000
    assert beam["inputs"] == pytest.approx({"w": self_weight / 5.0, "L": 5.0})
    assert comp_001["volume_cm3"] == 600000
    volumes = [0.6, 0.8, 0.45]
    assert priced["calculations"]["cost"]["total_cost"] == pytest.approx(
        sum(v * 900.0 for v in volumes))


async def test_old_components_are_requests_per_affinity_type(sfde: httpx.AsyncClient) -> None:
    answer = await old_process(sfde, {"components": [NODE_COMPONENT], "affinity_types": ["cost"]})
    assert answer["results"]["calculations"]["cost"]["total_cost"] is None
    priced = {"id": "P1", "quantity": 2.0, "unit_price": 50.0}
    results = (await old_process(sfde, {"components": [priced], "affinity_types": ["cost"]})
               )["results"]
    assert results["calculations"]["cost"]["total_cost"] == 100.0
    default = (await old_process(sfde, {"components": [priced]}))["results"]
    assert default["affinity_types"] == ["structural", "cost", "energy"]  # the old default
    # the old GraphQL node's nested dimensions are its attributes: its prism, by hand
    spatial = (await old_process(sfde, {"components": [{**NODE_COMPONENT, "density": 7850.0}],
                                    "affinity_types": ["spatial"]}))["results"]
    prism = rows(spatial, "spatial")["prism_geometry"]
    assert prism["outputs"]["volume"] == pytest.approx(5.0 * 0.3 * 0.4)


async def test_the_old_spatial_lists_are_accepted_and_not_read(
        sfde: httpx.AsyncClient) -> None:
    # neon/json_transformer.py _extract_sfde_parameters, affinity type "spatial"
    spatial = {"centroid": [1200.0, 800.0, 0.0], "bbox": [5000.0, 300.0, 400.0]}
    results = (await old_process(sfde, affinity_request("comp_001", ["spatial"], spatial))
               )["results"]
    (skipped,) = results["calculations"]["spatial"]["not_executed"]
    assert skipped["missing"] == ["length_m or length_mm", "width_m or width_mm",
                                  "height_m or height_mm", "density or component_density"]


@pytest.mark.parametrize(("data", "field", "needle"), [
    ({"sfde_requests": [{"affinity_type": "magic"}]}, "data.sfde_requests[0].affinity_type",
     "known: structural, cost"),
    ({"sfde_requests": [], "affinity_types": ["cost", "luck"]}, "data.affinity_types[1]",
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
    ({"components": [{"id": "A"}], "node_sequence": [], "affinity_types": ["cost"]},
     "data.node_sequence", "at least 1 item"),  # selecting none is no request (every service)
    ({"components": [{"id": "A"}], "affinity_types": ["spatial", "astral"]},
     "data.affinity_types[1]", "unknown affinity type 'astral'"),
    ({"sfde_requests": [{"affinity_type": "cost"}] * 501}, "data.sfde_requests",
     "at most 500 items"),
    ({"components": [{"id": "A", "component_density": 20000.0, "volume_m3": 10.0,
                      "length_m": 0.1}], "affinity_types": ["structural"]},
     "data.components[0].component_density", "self_weight_per_length("),
])
async def test_bad_old_payloads_are_422_naming_the_field(
        sfde: httpx.AsyncClient, data: dict[str, Any], field: str, needle: str) -> None:
    error = await old_process(sfde, data, status=422)
    assert error["field"] == field, error
    assert needle in error["message"], error
