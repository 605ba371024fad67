"""POST /select on a real in-loop cluster: exact optima, outcomes, bad input."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.services.optimization.instances import brute_force, instance, knapsack
from tests.support import make_settings, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def opt() -> AsyncIterator[httpx.AsyncClient]:
    """One cluster (with one pool worker) for the module."""
    async with run_cluster("optimization", make_settings(request_timeout=30)) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "optimization"), timeout=60) as http:
        yield http


SMALL = {"components": [
    {"id": "V01", "options": [
        {"id": "concrete", "cost": 42000, "scores": {"material": 0.7, "cost": 0.8}},
        {"id": "steel", "cost": 61000, "scores": {"material": 0.9, "cost": 0.5}}]},
    {"id": "V02", "options": [
        {"id": "timber", "cost": 30000, "scores": {"material": 0.6, "cost": 0.9}},
        {"id": "steel", "cost": 45000, "scores": {"material": 0.95, "cost": 0.6}}]}],
    "agent_coefficients": {
        "V01": {"material_weight_preference": 0.6, "cost_weight_preference": 0.3},
        "V02": {"material_weight_preference": 0.4, "cost_weight_preference": 0.4}}}


@pytest.mark.parametrize("seed", range(6))
async def test_optimum_equals_brute_force(opt: httpx.AsyncClient, seed: int) -> None:
    body = instance(seed, components=5, options=3)  # 3^5 = 243 combinations
    best = brute_force(body)
    r = await opt.post("/select", json=body)
    if best is None:
        assert r.status_code == 422 and r.json()["error"] == "infeasible", r.text
        return
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "optimal" and answer["optimal"] is True
    assert answer["objective"] == pytest.approx(best[0], abs=1e-6)
    assert answer["total_cost"] <= body["budget"] + 1e-9
    assert [c["component"] for c in answer["selection"]] == [f"C{i}" for i in range(5)]
    # the reported score is the weighted score recomputed from the request
    weights = body["agent_coefficients"]
    for chosen, comp in zip(answer["selection"], body["components"], strict=True):
        option = comp["options"][chosen["option_index"]]
        assert chosen["option"] == option["id"]
        assert chosen["score"] == pytest.approx(sum(
            weights[comp["id"]][f"{k}_weight_preference"] * v
            for k, v in option["scores"].items()))
    co2 = next(c for c in answer["constraints"] if c["name"] == "co2")
    assert co2["value"] <= co2["upper"] + 1e-9


async def test_budget_and_weights_decide(opt: httpx.AsyncClient) -> None:
    free = (await opt.post("/select", json=SMALL)).json()
    assert [c["option"] for c in free["selection"]] == ["steel", "steel"]
    assert free["weights"] == {"V01": {"cost": 0.3, "material": 0.6},
                               "V02": {"cost": 0.4, "material": 0.4}}
    tight = (await opt.post("/select", json={**SMALL, "budget": 90000})).json()
    # steel+steel costs 106000; of the rest, concrete+steel (87000) scores best
    assert [c["option"] for c in tight["selection"]] == ["concrete", "steel"]
    assert tight["total_cost"] == 87000
    cheap = (await opt.post("/select", json={**SMALL, "weights": {"material": 0,
                                                                   "cost": 1}})).json()
    assert [c["option"] for c in cheap["selection"]] == ["concrete", "timber"]
    assert cheap["weights"]["V01"] == {"cost": 1.0, "material": 0.0}


async def test_extra_constraint_by_terms_and_by_attribute(opt: httpx.AsyncClient) -> None:
    body = copy.deepcopy(SMALL)
    body["constraints"] = [{"name": "one steel at most", "upper": 1, "terms": [
        {"component": "V01", "option": "steel"}, {"component": "V02", "option": "steel"}]}]
    r = (await opt.post("/select", json=body)).json()
    # steel+timber scores 0.69 + 0.60, concrete+steel 0.66 + 0.62
    assert [c["option"] for c in r["selection"]] == ["steel", "timber"]
    assert r["constraints"] == [{"name": "one steel at most", "value": 1.0, "lower": None,
                                 "upper": 1.0}]
    for comp, co2 in zip(body["components"], ([300, 900], [100, 700]), strict=True):
        for option, value in zip(comp["options"], co2, strict=True):
            option["attributes"] = {"co2_t": value}
    body["constraints"] = [{"attribute": "co2_t", "upper": 900}]  # steel+timber: 1000 t
    r = (await opt.post("/select", json=body)).json()
    assert [c["option"] for c in r["selection"]] == ["concrete", "timber"]  # 300 + 100
    assert r["constraints"][0] == {"name": "constraints[0]", "value": 400.0, "lower": None,
                                   "upper": 900.0}


@pytest.mark.parametrize(("edit", "field", "needle"), [
    ({"budget": 50000}, "budget", "cheapest possible selection costs 72000"),
    ({"constraints": [{"terms": [{"component": "V01", "option": "steel"}], "lower": 1},
                      {"terms": [{"component": "V01", "option": "steel"}], "upper": 0.5}]},
     "constraints", "no selection satisfies"),
    ({"constraints": [{"terms": [{"component": "V02", "option": "steel"}], "lower": 2}]},
     "constraints[0]", "largest possible value is 1"),
])
async def test_infeasible_names_what_to_change(opt: httpx.AsyncClient, edit: dict[str, Any],
                                               field: str, needle: str) -> None:
    r = await opt.post("/select", json={**SMALL, **edit})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "infeasible" and r.json()["field"] == field
    assert needle in r.json()["message"]


async def test_node_limit_gives_the_best_selection_found(opt: httpx.AsyncClient) -> None:
    body = knapsack(1, components=30, options=6)  # 180 binaries: solved in the pool
    r = await opt.post("/select", json={**body, "max_nodes": 1})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "iteration_limit" and answer["optimal"] is False
    assert answer["nodes"] == 1 and "max_nodes" in answer["message"]
    assert answer["bound"] >= answer["objective"]
    assert answer["total_cost"] <= body["budget"]
    assert all(c["value"] <= c["upper"] + 1e-9 for c in answer["constraints"])
    metrics = (await opt.get("/metrics")).text
    assert 'bem_pool_tasks_total{cluster="optimization",outcome="ok",service="cluster"}' \
        in metrics


async def test_time_limit(opt: httpx.AsyncClient) -> None:
    body = knapsack(2, components=300, options=30)  # 9000 binaries, 1 ms: not even presolved
    r = await opt.post("/select", json={**body, "time_limit": 0.001})
    if r.status_code == 200:  # a machine fast enough to find a selection within 1 ms
        assert (r.json()["status"], r.json()["optimal"]) == ("time_limit", False)
        return
    assert r.status_code == 422, r.text
    assert (r.json()["error"], r.json()["field"]) == ("time_limit", "time_limit")
    assert "within 0.001 s" in r.json()["message"]


BAD: list[tuple[Any, int, str, str]] = [
    (b"{nope", 400, "body", "malformed JSON"),
    ({}, 422, "components", "required"),
    ({"components": []}, 422, "components", "at least 1"),
    ({"components": [{"id": "A", "options": []}]}, 422, "components[0].options", "at least 1"),
    ({"components": "A"}, 422, "components", "list"),
    ({**SMALL, "budget": -1}, 422, "budget", "greater than or equal to 0"),
    ({**SMALL, "budget": "lots"}, 422, "budget", "number"),
    ({**SMALL, "time_limit": 0}, 422, "time_limit", "greater than 0"),
    ({**SMALL, "time_limit": 31}, 422, "time_limit", "REQUEST_TIMEOUT"),
    ({**SMALL, "mip_gap": 2}, 422, "mip_gap", "less than or equal to 1"),
    ({**SMALL, "agent_coefficients": {}}, 422, "agent_coefficients.V01.cost_weight_preference",
     "no weight for criterion 'cost'"),
    ({**SMALL, "components": [SMALL["components"][0], SMALL["components"][0]]}, 422,
     "components[1].id", "duplicate component id"),
    ({"components": [{"id": "A", "options": [{"id": "x"}, {"id": "x"}]}]}, 422,
     "components[0].options[1].id", "duplicate option id"),
    ({"components": [{"id": "A", "options": [{"id": "x", "scores": {"q": 1}}, {"id": "y"}]}],
      "weights": {"q": 1}}, 422, "components[0].options[1].scores.q", "missing"),
    ({"components": [{"id": "A", "options": [{"id": "x", "cost": -5}]}]}, 422,
     "components[0].options[0].cost", "greater than or equal to 0"),
    ({"components": [{"id": "A", "options": [{"id": "x", "scores": {"q": "high"}}]}]}, 422,
     "components[0].options[0].scores.q", "number"),
    ({**SMALL, "constraints": [{"attribute": "co2", "lower": 5, "upper": 1}]}, 422,
     "constraints[0]", "lower (5) is above upper (1)"),
    ({**SMALL, "constraints": [{"attribute": "co2"}]}, 422, "constraints[0]",
     "give lower, upper or both"),
    ({**SMALL, "constraints": [{"attribute": "co2", "upper": 1, "terms": []}]}, 422,
     "constraints[0].terms", "at least 1"),
    ({**SMALL, "constraints": [{"attribute": "co2", "upper": 1}]}, 422,
     "components[0].options[0].attributes.co2", "constraints[0] sums 'co2'"),
    ({**SMALL, "constraints": [{"attribute": "co2", "components": ["V09"], "upper": 1}]}, 422,
     "constraints[0].components[0]", "unknown component"),
    ({**SMALL, "constraints": [{"terms": [{"component": "V09", "option": "steel"}],
                                "upper": 1}]}, 422, "constraints[0].terms[0].component",
     "no option"),
    ({**SMALL, "constraints": [{"terms": [{"component": "V01", "option": "gold"}],
                                "upper": 1}]}, 422, "constraints[0].terms[0].option",
     "no option 'gold'"),
    ({**SMALL, "surprise": 1}, 422, "surprise", "Extra inputs"),
]


@pytest.mark.parametrize(("body", "status", "field", "needle"), BAD)
async def test_bad_input_names_the_field(opt: httpx.AsyncClient, body: Any, status: int,
                                         field: str, needle: str) -> None:
    if isinstance(body, bytes):
        r = await opt.post("/select", content=body, headers={"content-type": "application/json"})
    else:
        r = await opt.post("/select", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field, r.json()
    assert needle in r.json()["message"], r.json()


async def test_legacy_envelope(opt: httpx.AsyncClient) -> None:
    r = await opt.post("/process", json={"data": {**SMALL, "budget": 90000}, "timestamp": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["service"] == "optimization" and body["status"] == "success"
    assert body["results"]["total_cost"] == 87000
    bad = await opt.post("/process", json={"data": {**SMALL, "budget": -3}})
    assert bad.status_code == 422 and bad.json()["field"] == "data.budget"


async def test_the_old_components_payload_is_a_422_saying_what_to_send(
        opt: httpx.AsyncClient) -> None:
    # tests/test_phase2_container_orchestration.py sends it to every service; the old
    # platform's optimization engine never served /process, and it carries no options.
    old = {"components": [{"id": "comp_001", "type": "beam", "primary_functor": "structural",
                           "status": "processed"}],
           "node_sequence": ["comp_001"], "phase": "phase_2", "affinity_types": ["cost"]}
    r = await opt.post("/process", json={"data": old, "timestamp": "2025-06-20T14:35:41"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "data.components[0].options"
    assert "the body of POST /select" in r.json()["message"]
    # a select body with a misspelt field is still read as a select body
    typo = await opt.post("/process", json={"data": {**SMALL, "budgett": 1}})
    assert typo.status_code == 422 and typo.json()["field"] == "data.budgett"
