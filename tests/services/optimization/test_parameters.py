"""POST /parameters with the real sfde in the same process (in-process service calls)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support import make_settings, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

B, M, SIGMA = 200.0, 50.0, 165.0  # mm, kN m, MPa
H_STAR = math.sqrt(6 * M * 1e6 / (B * SIGMA))  # 95.35 mm: 6 M / (b h^2) = sigma_allow

BEAM = {  # minimise the area of a 200 mm wide section under a 50 kN m moment
    "formula": "rectangular_section", "output": "area",
    "variables": [{"name": "h", "lower": 20, "upper": 1000}],
    "fixed": {"b": B, "M": M},
    "constraints": [{"expression": "6 * M * 1e6 / (b * h**2)", "upper": SIGMA}]}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def opt() -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(workers=0, request_timeout=30)  # parameters never use the pool
    async with run_cluster(services=["optimization", "sfde"], settings=settings) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "optimization"), timeout=60) as http:
        yield http


async def test_beam_depth_with_an_expression_constraint(opt: httpx.AsyncClient) -> None:
    r = await opt.post("/parameters", json=BEAM)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "optimal" and answer["optimal"] is True
    assert answer["variables"]["h"] == pytest.approx(H_STAR, rel=1e-6)
    assert answer["objective"] == pytest.approx(B * H_STAR, rel=1e-6)
    assert answer["outputs"]["section_modulus"] == pytest.approx(B * H_STAR**2 / 6, rel=1e-6)
    [stress] = answer["constraints"]
    assert stress["active"] and stress["value"] == pytest.approx(SIGMA, rel=1e-6)
    assert answer["sfde_calls"] >= 3 and answer["evaluations"] >= answer["iterations"]


async def test_beam_depth_with_sfde_formulas_only(opt: httpx.AsyncClient) -> None:
    """Same optimum through bending_stress: sigma = M / S <= sigma_allow, S from the section."""
    body = {**BEAM, "fixed": {"b": B},
            "constraints": [{"formula": "rectangular_section", "output": "section_modulus",
                             "lower": M * 1e6 / SIGMA}]}
    r = await opt.post("/parameters", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["variables"]["h"] == pytest.approx(H_STAR, rel=1e-6)
    check = await opt.post("/parameters", json={
        "formula": "bending_stress", "output": "stress", "sense": "maximize",
        "variables": [{"name": "S", "lower": r.json()["outputs"]["section_modulus"],
                       "upper": 1e7}], "fixed": {"M": M}})
    assert check.json()["objective"] == pytest.approx(SIGMA, rel=1e-6)


async def test_two_variables_maximise_the_section_modulus(opt: httpx.AsyncClient) -> None:
    """Max S = b h^2 / 6 with b h <= A and h <= 3 b: h = 3 b, b = sqrt(A / 3)."""
    area = 30_000.0
    r = await opt.post("/parameters", json={
        "formula": "rectangular_section", "output": "section_modulus", "sense": "maximize",
        "variables": [{"name": "b", "lower": 10, "upper": 500, "initial": 100},
                      {"name": "h", "lower": 10, "upper": 1500, "initial": 100}],
        "constraints": [{"formula": "rectangular_section", "output": "area", "upper": area},
                        {"expression": "h - 3 * b", "upper": 0}]})
    assert r.status_code == 200, r.text
    b = math.sqrt(area / 3)
    assert r.json()["variables"] == pytest.approx({"b": b, "h": 3 * b}, rel=1e-6)


async def test_infeasible_and_limits(opt: httpx.AsyncClient) -> None:
    shallow = {**BEAM, "variables": [{"name": "h", "lower": 20, "upper": 60}]}
    r = await opt.post("/parameters", json=shallow)
    assert r.status_code == 422, r.text
    assert (r.json()["error"], r.json()["field"]) == ("infeasible", "constraints")

    r = await opt.post("/parameters", json={**BEAM, "max_iterations": 1})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "iteration_limit" and r.json()["optimal"] is False
    assert r.json()["constraints"][0]["value"] <= SIGMA  # the best feasible point seen

    r = await opt.post("/parameters", json={**BEAM, "time_limit": 1e-6})
    assert r.status_code == 422, r.text
    assert (r.json()["error"], r.json()["field"]) == ("time_limit", "time_limit")


async def test_an_expression_undefined_inside_the_box_is_named(opt: httpx.AsyncClient) -> None:
    """sqrt(h - 100) is fine at the start (h = 500), undefined where the solver heads."""
    body = _bad(variables=[{"name": "h", "lower": 20, "upper": 1000, "initial": 500}],
                constraints=[{"expression": "6 * M * 1e6 / (b * h**2) + sqrt(h - 100)",
                              "upper": SIGMA}])
    r = await opt.post("/parameters", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "constraints[0].expression"
    assert "not finite" in r.json()["message"] and "at h=" in r.json()["message"]


def _bad(**edit: Any) -> dict[str, Any]:
    return {**BEAM, **edit}


BAD: list[tuple[Any, int, str, str]] = [
    (b"{", 400, "body", "malformed JSON"),
    (_bad(formula="girder"), 404, "formula", "no formula 'girder'"),
    (_bad(output="volume"), 422, "output", "has no output 'volume'"),
    (_bad(variables=[]), 422, "variables", "at least 1"),
    (_bad(variables=[{"name": "d"}]), 422, "variables[0].name", "not a parameter"),
    (_bad(variables=[{"name": "h"}, {"name": "h"}]), 422, "variables[1].name", "twice"),
    (_bad(variables=[{"name": "h", "lower": 500, "upper": 100}]), 422, "variables[0]",
     "lower (500) is above upper (100)"),
    (_bad(variables=[{"name": "h", "upper": 1e9}]), 422, "variables[0].upper",
     "outside rectangular_section's range"),
    (_bad(variables=[{"name": "h", "lower": 20, "upper": 100, "initial": 150}]), 422,
     "variables[0].initial", "outside"),
    (_bad(variables=[{"name": "h", "lower": "deep"}]), 422, "variables[0].lower", "number"),
    (_bad(fixed={"M": M}), 422, "fixed.b", "required by rectangular_section"),
    (_bad(fixed={"b": B, "M": M, "Q": 1}), 422, "fixed.Q", "not a parameter"),
    (_bad(fixed={"b": B, "M": M, "h": 100}), 422, "fixed.h", "also a variable"),
    (_bad(fixed={"b": 0, "M": M}), 422, "fixed.b", "below the minimum"),
    (_bad(constraints=[{"expression": "6 * M / (b * h**2) + k", "upper": 1}]), 422,
     "constraints[0].expression", "k"),
    (_bad(constraints=[{"expression": "6 * M *", "upper": 1}]), 422,
     "constraints[0].expression", "syntax"),
    (_bad(constraints=[{"formula": "nope", "output": "x", "upper": 1}]), 404,
     "constraints[0].formula", "no formula 'nope'"),
    (_bad(constraints=[{"formula": "rectangular_section", "output": "x", "upper": 1}]), 422,
     "constraints[0].output", "has no output 'x'"),
    (_bad(constraints=[{"formula": "rectangular_section", "upper": 1}]), 422,
     "constraints[0]", "output: required"),
    (_bad(constraints=[{"expression": "h", "formula": "rectangular_section", "output": "area",
                        "upper": 1}]), 422, "constraints[0]", "exactly one"),
    (_bad(constraints=[{"expression": "h"}]), 422, "constraints[0]", "lower, upper or both"),
    (_bad(constraints=[{"expression": "h", "lower": 3, "upper": 1}]), 422, "constraints[0]",
     "above upper"),
    (_bad(sense="sideways"), 422, "sense", "minimize"),
    (_bad(max_iterations=0), 422, "max_iterations", "greater than or equal to 1"),
    (_bad(time_limit=-1), 422, "time_limit", "greater than 0"),
    (_bad(time_limit=3600), 422, "time_limit", "REQUEST_TIMEOUT"),
]


@pytest.mark.parametrize(("body", "status", "field", "needle"), BAD)
async def test_bad_input_names_the_field(opt: httpx.AsyncClient, body: Any, status: int,
                                         field: str, needle: str) -> None:
    if isinstance(body, bytes):
        r = await opt.post("/parameters", content=body,
                           headers={"content-type": "application/json"})
    else:
        r = await opt.post("/parameters", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field, r.json()
    assert needle in r.json()["message"], r.json()
