"""functor_types over HTTP on a real in-loop cluster."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from bem.services.functor_types.registry import read_config
from tests.support import make_settings, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")
MAX_COMPONENTS = 500


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ft() -> AsyncIterator[httpx.AsyncClient]:
    """One cluster for the module (its pool worker takes a while to start)."""
    settings = make_settings(max_graph_nodes=MAX_COMPONENTS)
    async with run_cluster("functor_types", settings) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "functor_types")) as http:
        yield http


async def test_types_and_one_type(ft: httpx.AsyncClient) -> None:
    r = await ft.get("/types")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"].startswith("package:")
    assert [(t["name"], t["phase"], t["callback"]) for t in body["types"]] == [
        ("stateless_spatial", "alpha", "dag"), ("local_calcs", "beta", "relational"),
        ("aggregator", "gamma", "combinatorial")]
    r = await ft.get("/types/local_calcs")
    detail = r.json()
    assert detail["required_attributes"] == ["regulatory_strictness", "user_priority_score",
                                             "compliance_pass"]
    assert detail["schema"]["$schema"].endswith("2020-12/schema")
    assert detail["attributes"]["properties"]["compliance_pass"]["type"] == "boolean"
    missing = await ft.get("/types/quantum")
    assert missing.status_code == 404 and missing.json()["field"] == "name"
    assert "stateless_spatial" in missing.json()["message"]


async def test_validate_the_sample_and_a_broken_copy(ft: httpx.AsyncClient,
                                                     sample: dict[str, Any]) -> None:
    r = await ft.post("/validate", json={"components": sample["nodes"]})
    assert r.status_code == 200, r.text
    assert (r.json()["valid"], r.json()["invalid"]) == (10, 0)
    broken = copy.deepcopy(sample["nodes"])
    broken[2]["attrs"]["material_strength"] = 0
    del broken[5]["attrs"]["user_priority_score"]
    r = await ft.post("/validate", json={"components": broken})
    body = r.json()
    assert (body["valid"], body["invalid"]) == (8, 2)
    assert body["components"][2]["errors"] == [{
        "path": "components[2].attrs.material_strength", "keyword": "minimum",
        "message": "0 is less than the minimum of 0.1"}]
    assert body["components"][5]["suggestions"] == [{
        "path": "components[5].attrs.user_priority_score", "action": "set", "value": 0.5,
        "reason": "the type's default for this property"}]


async def test_big_batches_run_in_the_pool_with_the_same_answer(
        ft: httpx.AsyncClient, sample: dict[str, Any]) -> None:
    nodes = [dict(copy.deepcopy(sample["nodes"][i % 10]), id=f"N{i}") for i in range(450)]
    nodes[327]["attrs"]["roi_estimate"] = 11  # a gamma node (V08)
    r = await ft.post("/validate", json={"components": nodes})
    assert r.status_code == 200, r.text
    assert r.json()["invalid"] == 1
    assert r.json()["components"][327]["suggestions"][0]["value"] == 10
    metrics = (await ft.get("/metrics")).text
    assert 'bem_pool_tasks_total{cluster="functor_types",outcome="ok",service="cluster"} 1.0' \
        in metrics
    inline = await ft.post("/validate", json={"components": nodes[326:328]})
    assert inline.json()["components"][1]["errors"][0]["message"] == \
        r.json()["components"][327]["errors"][0]["message"]


async def test_affinity_table(ft: httpx.AsyncClient) -> None:
    body = (await ft.get("/affinity")).json()
    domains = body["domains"]
    assert domains == ["structural", "cost", "energy", "mep", "time", "fabrication"]
    m = body["matrix"]
    assert all(m[i][i] == 1.0 for i in range(6))
    assert all(m[i][j] == m[j][i] and 0 <= m[i][j] <= 1 for i in range(6) for j in range(6))
    assert body["by_domain"]["energy"]["mep"] == 0.9
    assert body["by_domain"]["structural"]["fabrication"] == 0.8


async def test_compatibility_tables_and_pairs(ft: httpx.AsyncClient,
                                              sample: dict[str, Any]) -> None:
    r = await ft.post("/compatibility", json={})
    assert r.status_code == 200, r.text
    assert r.json()["runs_in"] == {"stateless_spatial": "alpha", "local_calcs": "beta",
                                   "aggregator": "gamma"}
    assert r.json()["feeds"]["stateless_spatial"] == ["stateless_spatial", "local_calcs"]

    types = {n["id"]: n["functor_type"] for n in sample["nodes"]}
    links = [{"source": types[e["source"]], "target": types[e["target"]]}
             for e in sample["edges"]]
    placements = [{"functor_type": n["functor_type"], "phase": n["phase"]}
                  for n in sample["nodes"]]
    r = await ft.post("/compatibility", json={"links": links, "placements": placements})
    body = r.json()
    assert all(a["compatible"] for a in body["links"] + body["placements"])  # sample is sound

    pairs = [("stateless_spatial", "aggregator", False, "skip the beta phase"),
             ("aggregator", "local_calcs", False, "backwards"),
             ("local_calcs", "aggregator", True, "forward from beta to gamma"),
             ("local_calcs", "local_calcs", True, "within phase beta")]
    r = await ft.post("/compatibility", json={
        "links": [{"source": s, "target": t} for s, t, _, _ in pairs],
        "placements": [{"functor_type": "aggregator", "phase": "alpha"}]})
    for answer, (_, _, ok, why) in zip(r.json()["links"], pairs, strict=True):
        assert answer["compatible"] is ok and why in answer["reason"]
    assert r.json()["placements"] == [{"functor_type": "aggregator", "phase": "alpha",
                                       "compatible": False,
                                       "reason": "aggregator runs in phase gamma, not alpha"}]


@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("/validate", b"{oops", 400, "body"),
    ("/validate", {"components": []}, 422, "components"),
    ("/validate", {"components": [{"id": "A"}, 3]}, 422, "components[1]"),
    ("/validate", {"components": {"id": "A"}}, 422, "components"),
    ("/validate", {"components": [], "extra": 1}, 422, "components"),
    ("/compatibility", {"links": [{"source": "aggregator", "target": "gizmo"}]}, 422,
     "links[0].target"),
    ("/compatibility", {"placements": [{"functor_type": "nope", "phase": "alpha"}]}, 422,
     "placements[0].functor_type"),
    ("/compatibility", {"placements": [{"functor_type": "aggregator", "phase": "delta"}]}, 422,
     "placements[0].phase"),
    ("/compatibility", {"links": "all"}, 422, "links"),
    ("/compatibility", b"[1, 2", 400, "body"),
])
async def test_bad_input_names_the_field(ft: httpx.AsyncClient, path: str, body: Any,
                                         status: int, field: str) -> None:
    if isinstance(body, bytes):
        r = await ft.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = await ft.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field, r.json()


async def test_too_many_components_is_413(ft: httpx.AsyncClient,
                                          sample: dict[str, Any]) -> None:
    r = await ft.post("/validate", json={"components": sample["nodes"] * 51})
    assert r.status_code == 413 and r.json()["field"] == "components"
    assert "MAX_GRAPH_NODES" in r.json()["message"]


async def test_legacy_envelope(ft: httpx.AsyncClient, sample: dict[str, Any]) -> None:
    r = await ft.post("/process", json={"data": {"components": sample["nodes"][:2]},
                                        "timestamp": 1700000000})
    assert r.status_code == 200, r.text
    assert r.json()["service"] == "functor_types"
    assert r.json()["results"]["valid"] == 2
    bad = await ft.post("/process", json={"data": {"components": []}})
    assert bad.status_code == 422 and bad.json()["field"] == "data.components"


async def test_override_file_is_reloaded_after_the_ttl(tmp_path: Path) -> None:
    config = read_config(None)[1]
    path = tmp_path / "types.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    settings = make_settings(functor_types_path=path, config_cache_ttl=0,  # re-read each time
                             workers=0)
    async with run_cluster("functor_types", settings) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "functor_types")) as http:
        before = (await http.get("/types")).json()
        assert before["source"] == str(path)
        config["affinity"]["pairs"]["energy"]["mep"] = 0.95
        config["types"]["aggregator"]["functors"].append("aggregate_investment")
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        after = (await http.get("/types")).json()
        assert after["digest"] != before["digest"]
        assert (await http.get("/affinity")).json()["by_domain"]["mep"]["energy"] == 0.95
        component = {"id": "G", "functor": "aggregate_investment",
                     "attrs": {"bid_match_score": 0.5, "occupancy_rate": 0.5,
                               "roi_estimate": 0.1}}
        r = await http.post("/validate", json={"components": [component]})
        assert r.json()["components"][0]["functor_type"] == "aggregator"
        assert r.json()["valid"] == 1
        path.write_text("affinity: {", encoding="utf-8")  # broken: the last good one stays
        assert (await http.get("/types")).json()["digest"] == after["digest"]
        health = (await http.get("/health")).json()
        assert health["status"] == "warn"
        assert health["checks"]["config:registry"][0]["status"] == "warn"
