"""sfde over HTTP on a real in-loop cluster: every endpoint, its bad inputs, the legacy shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bem.services.sfde.formulas import CATALOGUE
from tests.support import make_settings, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")
MAX_ROWS = 50  # small limits so that the 413s are cheap to reach
MAX_EXPRESSION = 600
MAX_BODY = 64 * 1024


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sfde() -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(max_columns_rows=MAX_ROWS, max_expression_length=MAX_EXPRESSION,
                             max_body_size=MAX_BODY)
    async with run_cluster("sfde", settings) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "sfde")) as http:
        yield http


async def test_list_and_get_formulas(sfde: httpx.AsyncClient) -> None:
    r = await sfde.get("/formulas")
    assert r.status_code == 200
    formulas = r.json()["formulas"]
    assert [f["name"] for f in formulas] == sorted(CATALOGUE)
    for f in formulas:
        assert set(f) == {"name", "title", "description", "domain", "reference", "parameters",
                          "outputs"}
        assert all(set(p) == {"name", "unit", "description", "min", "max", "default"}
                   for p in f["parameters"])
        assert all(set(o) == {"name", "unit", "description"} for o in f["outputs"])
    one = await sfde.get("/formulas/euler_buckling")
    assert one.status_code == 200 and one.json() == next(
        f for f in formulas if f["name"] == "euler_buckling")
    k = next(p for p in one.json()["parameters"] if p["name"] == "K")
    assert k == {"name": "K", "unit": "1", "description": k["description"], "min": 0.5,
                 "max": 2.1, "default": 1.0}
    missing = await sfde.get("/formulas/beam")
    assert missing.status_code == 404
    assert missing.json()["field"] == "name"
    assert "'beam'" in missing.json()["message"] and "simple_beam_udl" in missing.json()["message"]


async def test_openapi_documents_every_formula(sfde: httpx.AsyncClient) -> None:
    description = (await sfde.get("/openapi.json")).json()["info"]["description"]
    for f in CATALOGUE.values():
        assert f"**`{f.name}`**" in description and f.reference in description


async def test_evaluate_one_row_and_columns(sfde: httpx.AsyncClient) -> None:
    r = await sfde.post("/evaluate", json={"formula": "simple_beam_udl",
                                           "params": {"w": 10, "L": 6}})
    assert r.status_code == 200, r.text
    assert r.json() == {"formula": "simple_beam_udl", "rows": None,
                        "outputs": {"max_moment": 45.0, "max_shear": 30.0}}
    w, span = [10, 12.5, 0, 3.25], [6, 4, 7, 12]
    r = await sfde.post("/evaluate", json={"formula": "simple_beam_udl",
                                           "columns": {"w": w, "L": span}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rows"] == 4
    assert body["outputs"]["max_moment"] == [a * b * b / 8 for a, b in zip(w, span, strict=True)]
    for i in range(4):  # vectorised == row by row, through the API
        row = await sfde.post("/evaluate", json={"formula": "simple_beam_udl",
                                                 "params": {"w": w[i], "L": span[i]}})
        assert {k: v[i] for k, v in body["outputs"].items()} == row.json()["outputs"]
    again = await sfde.post("/evaluate", json={"formula": "simple_beam_udl",
                                               "columns": {"w": w, "L": span}})
    assert again.json() == body  # idempotent


async def test_defaults_fill_omitted_parameters(sfde: httpx.AsyncClient) -> None:
    r = await sfde.post("/evaluate", json={"formula": "lrfd_combinations",
                                           "columns": {"D": [10, 20], "L": [5, 0]}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["governing"] == [max(14, 12 + 8), 28]


@pytest.mark.parametrize(("body", "status", "field", "needle"), [
    (b"{not json", 400, "body", "malformed JSON"),
    (b"[1, 2]", 422, "body", "valid dictionary"),
    ({"params": {"w": 1}}, 422, "formula", "Field required"),
    ({"formula": "beam", "params": {"w": 1}}, 422, "formula", "unknown formula 'beam'"),
    ({"formula": 3, "params": {"w": 1}}, 422, "formula", "valid string"),
    ({"formula": "simple_beam_udl"}, 422, "body", "exactly one of params"),
    ({"formula": "simple_beam_udl", "params": {"w": 1, "L": 2}, "columns": {"w": [1]}}, 422,
     "body", "exactly one of params"),
    ({"formula": "simple_beam_udl", "params": {"w": "10", "L": 6}}, 422, "params.w",
     "valid number"),
    ({"formula": "simple_beam_udl", "params": {"w": True, "L": 6}}, 422, "params.w",
     "valid number"),
    ({"formula": "simple_beam_udl", "params": {"w": None, "L": 6}}, 422, "params.w",
     "valid number"),
    ({"formula": "simple_beam_udl", "params": [1, 2]}, 422, "params", "valid dictionary"),
    ({"formula": "simple_beam_udl", "params": {"w": 10}}, 422, "params.L", "required"),
    ({"formula": "simple_beam_udl", "params": {"w": 10, "L": 6, "E": 1}}, 422, "params.E",
     "unknown parameter"),
    ({"formula": "simple_beam_udl", "params": {"w": 10, "L": 600}}, 422, "params.L",
     "600 is above the maximum 200 m"),
    ({"formula": "simple_beam_udl", "params": {"w": -1, "L": 6}}, 422, "params.w",
     "below the minimum 0"),
    ({"formula": "simple_beam_udl", "columns": {"w": [1, "x"], "L": [1, 2]}}, 422,
     "columns.w[1]", "valid number"),
    ({"formula": "simple_beam_udl", "columns": {"w": 1, "L": [1]}}, 422, "columns.w",
     "valid list"),
    ({"formula": "simple_beam_udl", "columns": {"w": [1, 2], "L": [1]}}, 422, "columns.L",
     "has 1 values"),
    ({"formula": "simple_beam_udl", "columns": {"w": [], "L": []}}, 422, "columns",
     "at least one value"),
    ({"formula": "simple_beam_udl", "columns": {"w": [1, 2, 3], "L": [5, 500, 6]}}, 422,
     "columns.L[1]", "500 is above the maximum"),
    ({"formula": "pert_duration", "params": {"optimistic": 5, "most_likely": 3,
                                             "pessimistic": 9}}, 422, "params.most_likely",
     "less than optimistic"),
    ({"formula": "irr_annuity", "params": {"initial_investment": 100, "payment": 0,
                                           "periods": 5}}, 422, "params.payment",
     "no IRR exists"),
    ({"formula": "npv_annuity", "params": {"payment": 1, "rate": -0.9, "periods": 1200}}, 422,
     "params", "not finite"),
    ({"formula": "simple_beam_udl", "columns": {"w": [1] * (MAX_ROWS + 1),
                                                "L": [1] * (MAX_ROWS + 1)}}, 413, "columns.L",
     "MAX_COLUMNS_ROWS"),
])
async def test_evaluate_bad_input(sfde: httpx.AsyncClient, body: Any, status: int, field: str,
                                  needle: str) -> None:
    if isinstance(body, bytes):
        r = await sfde.post("/evaluate", content=body,
                            headers={"content-type": "application/json"})
    else:
        r = await sfde.post("/evaluate", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert needle in r.json()["message"], r.json()["message"]


async def test_nan_literal_is_refused(sfde: httpx.AsyncClient) -> None:
    r = await sfde.post("/evaluate", content=b'{"formula": "roi", "params": '
                                             b'{"final_value": NaN, "cost": 1}}',
                        headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "params.final_value"


async def test_oversized_body_is_413(sfde: httpx.AsyncClient) -> None:
    big = {"formula": "roi", "columns": {"final_value": [1.0] * 20_000, "cost": [1.0]}}
    r = await sfde.post("/evaluate", json=big)
    assert r.status_code == 413 and "MAX_BODY_SIZE" in r.json()["message"]


async def test_expressions(sfde: httpx.AsyncClient) -> None:
    r = await sfde.post("/expressions", json={"expression": "w * L**2 / 8",
                                              "variables": {"w": 10, "L": 6}})
    assert r.status_code == 200 and r.json() == {"value": 45.0, "values": None}
    r = await sfde.post("/expressions", json={"expression": "w * L**2 / 8 if L > 5 else 0",
                                              "variables": {"w": 10, "L": [4, 6, 8]}})
    assert r.status_code == 200 and r.json() == {"value": None, "values": [0.0, 45.0, 80.0]}
    r = await sfde.post("/expressions", json={"expression": "2 * pi"})
    assert r.json()["value"] == pytest.approx(6.283185307179586)


@pytest.mark.parametrize(("body", "status", "field", "needle"), [
    (b'{"expression": ', 400, "body", "malformed JSON"),
    ({"variables": {"x": 1}}, 422, "expression", "Field required"),
    ({"expression": ""}, 422, "expression", "at least 1 character"),
    ({"expression": 42}, 422, "expression", "valid string"),
    ({"expression": "x", "variables": {"x": "1"}}, 422, "variables.x", "finite number"),
    ({"expression": "x", "variables": {"x": [1, True]}}, 422, "variables.x", "item 1 is True"),
    ({"expression": "x", "variables": {"x": 10**400}}, 422, "variables.x", "finite number"),
    ({"expression": "x", "variables": [1]}, 422, "variables", "valid dictionary"),
    ({"expression": "x", "variables": {"x": [1, 2], "y": [1]}}, 422, "variables.y",
     "same, non-zero length"),
    ({"expression": "x", "variables": {"pi": 1}}, 422, "variables.pi", "reserved"),
    ({"expression": "__import__('os').system('touch /tmp/pwned')"}, 422, "expression",
     "attribute access"),
    ({"expression": "__import__('os')"}, 422, "expression", "'__import__' is not allowed"),
    ({"expression": "x.__class__.__bases__", "variables": {"x": 1}}, 422, "expression",
     "attribute access"),
    ({"expression": "[c for c in ()]"}, 422, "expression", "comprehensions"),
    ({"expression": "(lambda: 1)()"}, 422, "expression", "lambda"),
    ({"expression": "9**9**9"}, 422, "expression", "not finite"),
    ({"expression": "(" * 250 + "1" + ")" * 250}, 422, "expression", "nested parentheses"),
    ({"expression": "-" * 200 + "1"}, 422, "expression", "nested more than"),
    ({"expression": "y * 2", "variables": {"x": 1}}, 422, "expression",
     "unknown variable 'y'"),
    ({"expression": "1+" * MAX_EXPRESSION + "1"}, 413, "expression",
     "MAX_EXPRESSION_LENGTH"),
    ({"expression": "x", "variables": {"x": [1] * (MAX_ROWS + 1)}}, 413, "variables.x",
     "MAX_COLUMNS_ROWS"),
])
async def test_expression_bad_input(sfde: httpx.AsyncClient, body: Any, status: int,
                                    field: str, needle: str) -> None:
    if isinstance(body, bytes):
        r = await sfde.post("/expressions", content=body,
                            headers={"content-type": "application/json"})
    else:
        r = await sfde.post("/expressions", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert needle in r.json()["message"], r.json()["message"]


async def test_legacy_envelope(sfde: httpx.AsyncClient) -> None:
    r = await sfde.post("/process", json={"data": {"formula": "roi", "params": {
        "final_value": 120, "cost": 100}}, "timestamp": 1700000000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["service"] == "sfde"
    assert body["results"] == {"formula": "roi", "rows": None,
                               "outputs": {"roi": 0.2, "roi_percent": 20.0, "net_gain": 20.0}}
    assert body["processing_time_ms"] > 0 and body["timestamp"] == 1700000000
    bad = await sfde.post("/process", json={"data": {"formula": "roi", "params": {"cost": "x"}}})
    assert bad.status_code == 422 and bad.json()["field"] == "data.params.cost"
    unknown = await sfde.post("/process", json={"data": {"formula": "nope", "params": {}}})
    assert unknown.status_code == 422 and "unknown formula" in unknown.json()["message"]
