"""sfde's affinity types (POST /affinity): the plans on their own, then the operation on a
real cluster, inline and in the compute pool. Every value is checked against POST /evaluate
for the same params, and the derived quantities against their formulas by hand.

The component of most tests is the sample project's V01 with the agent console's
parameters (frontend/agent_console_graphql.html: volume_cm3, area_m2, length_mm).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bem.compat.cases.graphql import OLD_PARAMETERS
from bem.data import sample_project
from bem.services.sfde import affinity
from bem.services.sfde.affinity import G, Inputs
from bem.services.sfde.formulas import CATALOGUE
from bem.services.sfde.models import AFFINITY_TYPES, MAX_AFFINITY_REQUESTS
from tests.support import make_settings, metric_total, run_cluster, url_of

V01 = sample_project()["nodes"][0]["attrs"]  # component_density 2400, volume_m3 12.5, ...
# Enough for every formula of every type to run.
EVERYTHING = {**OLD_PARAMETERS, "width_mm": 300.0, "height_mm": 450.0, "unit_price": 180.0,
              "hours": 6.0, "rate": 45.0, "U": 0.35, "dT": 20.0, "optimistic": 2.0,
              "most_likely": 3.0, "pessimistic": 7.0}


def inputs(parameters: dict[str, float], attributes: dict[str, Any]) -> Inputs:
    return Inputs("requests[0]", parameters, attributes)


def values(p: affinity.Plan) -> dict[str, dict[str, float]]:
    return {e.formula: {k: v.value for k, v in e.values.items()} for e in p.evaluations}


# --- the plans ------------------------------------------------------------------------------
def test_every_recipe_names_catalogue_formulas_and_known_quantities() -> None:
    assert tuple(affinity.RECIPES) == AFFINITY_TYPES
    for steps in affinity.RECIPES.values():
        for step in steps:
            names = {p.name for p in CATALOGUE[step.formula].parameters}
            assert set(step.quantities) <= names, step
            assert set(step.quantities.values()) <= {*affinity.SOURCES, *affinity.DERIVED}
    for derived in affinity.DERIVED.values():
        assert set(derived.inputs) <= {*affinity.SOURCES, *affinity.DERIVED}


def test_parameters_win_over_attributes_and_units_convert() -> None:
    p = affinity.plan("structural", inputs(
        {"volume_cm3": 2e6, "density": 500.0, "length_mm": 3000.0, "L": 1.5},
        {"component_density": 2400.0, "length_m": 4.0, "volume_m3": 12.5}))
    dead = 500.0 * 2.0 * G / 1000  # the request's density; 2e6 cm3 = 2 m3, not 12.5 m3
    got = values(p)
    assert got["lrfd_combinations"] == pytest.approx(
        {"D": dead, "L": 1.5, "Lr": 0.0, "S": 0.0, "R": 0.0, "W": 0.0})  # L: the live load
    # the span is the length quantity (3000 mm), not the live load L the request names
    assert got["simple_beam_udl"] == pytest.approx({"w": dead / 3.0, "L": 3.0})
    beam = p.evaluations[1].values
    assert beam["L"].source == "parameters.length_mm x 0.001"
    assert beam["w"].source == ("self_weight_per_length(parameters.density, parameters."
                                "volume_cm3 x 1e-06, parameters.length_mm x 0.001)")
    assert p.evaluations[0].values["W"].source == "default"
    assert not p.missing


def test_a_catalogue_name_is_taken_as_given() -> None:
    # D given: no self weight is derived; w and L given: the beam as sent.
    p = affinity.plan("structural", inputs({"D": 40.0, "w": 12.5, "L": 6.0}, V01))
    assert values(p)["lrfd_combinations"]["D"] == 40.0
    assert values(p)["simple_beam_udl"] == {"w": 12.5, "L": 6.0}
    # an attribute by a catalogue name too: V01's material_strength
    fabrication = affinity.plan("fabrication", inputs({}, V01))
    assert values(fabrication)["manufacturing_score"] == {
        "density": 2400.0, "material_strength": 32.0, "buildability": 0.82, "s_ref": 25.0}


def test_what_is_missing_is_named() -> None:
    p = affinity.plan("structural", inputs({"length_mm": 0.0},
                                           {"component_density": 2400.0, "volume_m3": 1.0}))
    assert [e.formula for e in p.evaluations] == ["lrfd_combinations"]
    assert p.missing == {"simple_beam_udl": [
        "self_weight_per_length (undefined for the values given, e.g. a zero length)"]}
    nothing = affinity.plan("structural", inputs({}, {"compliance_pass": True}))
    assert nothing.missing == {
        "lrfd_combinations": ["density or component_density", "volume_m3 or volume_cm3"],
        "simple_beam_udl": ["density or component_density", "volume_m3 or volume_cm3",
                            "length_m or length_mm"]}
    assert affinity.plan("cost", inputs({}, V01)).missing == {
        "material_cost": ["unit_price"], "labour_cost": ["hours", "rate"]}


def test_the_gateway_never_imports_the_planning() -> None:
    """The gateway calls POST /affinity through the service client: loading sfde's spec
    (to call it) and the old GraphQL resolvers loads neither this module nor NumPy."""
    code = ("import sys; from bem.services import spec; import bem.services.graphql.legacy; "
            "spec('sfde').get('evaluate_affinity'); "
            "print(sorted(m for m in ('bem.services.sfde.affinity', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# --- POST /affinity -------------------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sfde() -> AsyncIterator[httpx.AsyncClient]:
    async with run_cluster("single", make_settings(workers=0), services=["sfde"]) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "sfde"), timeout=30) as http:
        yield http


async def post(http: httpx.AsyncClient, requests: list[dict[str, Any]], status: int = 200
               ) -> dict[str, Any]:
    r = await http.post("/affinity", json={"requests": requests})
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def evaluate(http: httpx.AsyncClient, formula: str, params: dict[str, float]
                   ) -> dict[str, float]:
    r = await http.post("/evaluate", json={"formula": formula, "params": params})
    assert r.status_code == 200, r.text
    return r.json()["outputs"]  # type: ignore[no-any-return]


V01_EVERYTHING = {"component_id": "V01", "affinity_types": list(AFFINITY_TYPES),
                  "parameters": EVERYTHING, "attributes": V01}


@pytest.mark.asyncio(loop_scope="module")
async def test_every_output_is_post_evaluate_for_the_params_answered(
        sfde: httpx.AsyncClient) -> None:
    answer = await post(sfde, [V01_EVERYTHING])
    (component,) = answer["results"]
    assert component["component_id"] == "V01" and list(component["affinity"]) == list(
        AFFINITY_TYPES)
    for kind, result in component["affinity"].items():
        assert result["status"] == "completed" and result["missing"] == {}, kind
        assert list(result["formulas"]) == [s.formula for s in affinity.RECIPES[kind]]
        for name, f in result["formulas"].items():
            assert f["outputs"] == await evaluate(sfde, name, f["params"]), (kind, name)
        assert result["formulas_executed"] == len(result["formulas"])
    assert answer["formulas_executed"] == 9


@pytest.mark.asyncio(loop_scope="module")
async def test_derived_quantities_are_their_formulas(sfde: httpx.AsyncClient) -> None:
    (component,) = (await post(sfde, [V01_EVERYTHING]))["results"]
    by_type = component["affinity"]
    density, volume, length = 2400.0, 1000.0e-6, 2.0  # V01's density; 1000 cm3; 2000 mm
    dead = density * volume * G / 1000  # kN
    structural = by_type["structural"]["formulas"]
    assert structural["lrfd_combinations"]["params"]["D"] == pytest.approx(dead)
    assert structural["lrfd_combinations"]["outputs"]["governing"] == pytest.approx(1.4 * dead)
    w = dead / length  # its own weight along its length, kN/m
    beam = structural["simple_beam_udl"]
    assert beam["params"] == pytest.approx({"w": w, "L": length})
    assert beam["outputs"]["max_moment"] == pytest.approx(w * length**2 / 8)
    cost = by_type["cost"]
    material = volume * 180.0  # quantity = the volume, m3
    assert cost["formulas"]["material_cost"]["outputs"]["cost"] == pytest.approx(material)
    assert cost["cost"] == pytest.approx(material + 6 * 45)
    hvac = by_type["energy"]["formulas"]["hvac_load"]
    assert hvac["outputs"]["conduction"] == pytest.approx(0.35 * 10.0 * 20)  # U A dT
    assert by_type["mep"]["formulas"] == by_type["energy"]["formulas"]
    prism = by_type["spatial"]["formulas"]["prism_geometry"]
    assert prism["outputs"]["mass"] == pytest.approx(density * 2.0 * 0.3 * 0.45)
    assert by_type["structural"]["cost"] is None


@pytest.mark.asyncio(loop_scope="module")
async def test_missing_parameters_are_named(sfde: httpx.AsyncClient) -> None:
    v05 = sample_project()["nodes"][4]["attrs"]  # a beta node: no density, no volume
    (component,) = (await post(sfde, [{"component_id": "V05",
                                        "affinity_types": ["structural", "cost", "spatial"],
                                        "parameters": OLD_PARAMETERS,
                                        "attributes": v05}]))["results"]
    structural, cost, spatial = (component["affinity"][k]
                                 for k in ("structural", "cost", "spatial"))
    assert structural["status"] == "missing_parameters" and structural["formulas"] == {}
    assert structural["missing"] == {"lrfd_combinations": ["density or component_density"],
                                     "simple_beam_udl": ["density or component_density"]}
    assert cost["status"] == "missing_parameters" and cost["cost"] is None
    assert cost["missing"] == {"material_cost": ["unit_price"],
                               "labour_cost": ["hours", "rate"]}
    assert spatial["missing"] == {"prism_geometry": [
        "width_m or width_mm", "height_m or height_mm", "density or component_density"]}
    partial = (await post(sfde, [{"affinity_types": ["cost"],
                                  "parameters": {"hours": 2.0, "rate": 50.0}}]))["results"]
    assert partial[0]["affinity"]["cost"]["status"] == "partial"
    assert partial[0]["affinity"]["cost"]["cost"] == 100.0


@pytest.mark.asyncio(loop_scope="module")
async def test_many_components_are_answered_as_each_alone(sfde: httpx.AsyncClient) -> None:
    sample = sample_project()["nodes"]
    requests = [{"component_id": n["id"], "affinity_types": ["structural", "fabrication"],
                 "parameters": {"length_mm": 1000.0 * (i + 1)}, "attributes": n["attrs"]}
                for i, n in enumerate(sample)]
    together = (await post(sfde, requests))["results"]
    alone = [(await post(sfde, [r]))["results"][0] for r in requests]
    assert together == alone
    assert [r["affinity"]["fabrication"]["status"] for r in together] == \
        ["completed"] * 3 + ["missing_parameters"] * 7  # only alpha nodes have materials


def bounds_case(parameters: dict[str, Any], attributes: dict[str, Any] | None = None,
                kinds: tuple[str, ...] = ("structural",)) -> list[dict[str, Any]]:
    return [{"affinity_types": list(kinds), "parameters": parameters,
             "attributes": attributes or {}}]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("requests", "field", "needles"), [
    ([{"affinity_types": ["structural", "astral"]}], "requests[0].affinity_types[1]",
     ["unknown affinity type 'astral'", "known: structural, cost"]),
    ([{"affinity_types": ["cost", "cost"]}], "requests[0].affinity_types", ["cost given twice"]),
    ([{"affinity_types": []}], "requests[0].affinity_types", ["at least 1 item"]),
    ([{"affinity_types": ["cost"], "parameters": {"unit_price": "cheap"}}],
     "requests[0].parameters.unit_price", ["valid number"]),
    ([{"affinity_types": ["cost"], "inputs": {}}], "requests[0].inputs", ["Extra inputs"]),
    ([{"affinity_types": ["cost"]}] * (MAX_AFFINITY_REQUESTS + 1), "requests",
     [f"at most {MAX_AFFINITY_REQUESTS} items"]),
    # a value converted to the parameter's unit, out of its bounds: the field sent is named
    (bounds_case({"length_mm": 50.0}, V01), "requests[0].parameters.length_mm",
     ["0.05 is below the minimum 0.1 m",
      "(structural simple_beam_udl L = length_mm x 0.001)"]),
    # a derived value out of bounds: its first input is named, the derivation shown
    (bounds_case({"length_m": 0.1, "volume_m3": 100.0}, {"component_density": 20000.0}),
     "requests[0].attributes.component_density",
     ["above the maximum 10000 kN/m",
      "w = self_weight_per_length(component_density, volume_m3, length_m)"]),
    (bounds_case({}, {"component_density": "heavy", "volume_m3": 1.0}),
     "requests[0].attributes.component_density", ["must be a finite number"]),
    ([{"affinity_types": ["time"], "parameters": {
        "optimistic": 1, "most_likely": 2, "pessimistic": 3}},
      {"affinity_types": ["time"], "parameters": {
          "optimistic": 5, "most_likely": 3, "pessimistic": 9}}],
     "requests[1].parameters.most_likely", ["less than optimistic"]),
])
async def test_bad_requests_are_422_naming_the_field(
        sfde: httpx.AsyncClient, requests: list[dict[str, Any]], field: str,
        needles: list[str]) -> None:
    error = await post(sfde, requests, status=422)
    assert error["field"] == field, error
    assert error["message"].startswith(field), error
    for needle in needles:
        assert needle in error["message"], error


@pytest.mark.asyncio(loop_scope="module")
async def test_openapi_documents_the_operation_and_every_recipe(
        sfde: httpx.AsyncClient) -> None:
    doc = (await sfde.get("/openapi.json")).json()
    post_affinity = doc["paths"]["/affinity"]["post"]
    assert "422" in post_affinity["responses"]
    schemas = doc["components"]["schemas"]
    kinds = schemas["AffinityComponent"]["properties"]["affinity_types"]["items"]
    assert kinds["enum"] == list(AFFINITY_TYPES)
    description = doc["info"]["description"]
    for kind, steps in affinity.RECIPES.items():
        assert f"- **{kind}**: `{steps[0].formula}`" in description
    assert "self_weight: the component's own weight" in description


# --- in the compute pool --------------------------------------------------------------------
@pytest.mark.asyncio(loop_scope="module")
async def test_the_pool_answers_what_the_loop_answers(sfde: httpx.AsyncClient) -> None:
    """INLINE_BUDGET_MS=0 sends every evaluation to a pool worker (a compute cluster: its
    graph_runtime brings the pool), errors included."""
    settings = make_settings(workers=1, inline_budget_ms=0)
    requests = [V01_EVERYTHING, {"affinity_types": ["time", "cost"],
                                 "parameters": {"optimistic": 1.0, "most_likely": 1.0,
                                                "pessimistic": 4.0}}]
    bad = bounds_case({"length_mm": 50.0}, V01)
    async with run_cluster("compute", settings, services=["sfde", "graph_runtime"]) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "sfde"), timeout=60) as pooled:
        before = metric_total((await pooled.get("/metrics")).text, "bem_pool_tasks_total")
        assert await post(pooled, requests) == await post(sfde, requests)
        assert await post(pooled, bad, status=422) == await post(sfde, bad, status=422)
        after = metric_total((await pooled.get("/metrics")).text, "bem_pool_tasks_total")
    assert after - before == 2
