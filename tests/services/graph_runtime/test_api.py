"""graph_runtime over HTTP on a real in-loop cluster."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import run_cluster, url_of


@pytest.fixture
async def gr() -> Any:
    async with run_cluster("graph_runtime") as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "graph_runtime")) as http:
        yield http


async def test_store_get_and_analyze_sample(gr: httpx.AsyncClient, sample: dict[str, Any]) -> None:
    stored = await gr.post("/graphs", json=sample)
    assert stored.status_code == 201, stored.text
    gid = stored.json()["graph_id"]
    again = await gr.post("/graphs", json=sample)
    assert again.json() == {**stored.json(), "created": False}
    fetched = await gr.get(f"/graphs/{gid}")
    assert fetched.status_code == 200
    assert {n["id"] for n in fetched.json()["nodes"]} == {f"V{i:02d}" for i in range(1, 11)}

    r = await gr.post("/analyze", json={"graph_id": gid, "metrics": [
        "summary", "dag", "levels", "critical_path", "components", "shortest_path"],
        "options": {"source": "V01", "target": "V09"}})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert res["summary"]["nodes"] == 10 and res["summary"]["edges"] == 12
    assert res["dag"] == {"is_dag": True}
    assert res["levels"][0] == ["V01", "V03"]
    # V01 -5-> V02 -4-> V05 -3-> V09 is the heaviest chain: 12
    assert res["critical_path"] == {"path": ["V01", "V02", "V05", "V09"], "length": 12.0}
    assert res["components"]["weak_count"] == 1
    assert res["shortest_path"]["path"][0] == "V01" and res["shortest_path"]["path"][-1] == "V09"


async def test_cycle_is_named(gr: httpx.AsyncClient, sample: dict[str, Any]) -> None:
    sample["edges"].append({"source": "V09", "target": "V01", "kind": "dependency",
                            "weight": 1.0})
    r = await gr.post("/analyze", json={"graph": sample, "metrics": ["dag"]})
    assert r.json()["results"]["dag"]["cycle"][0] == r.json()["results"]["dag"]["cycle"][-1]
    r = await gr.post("/analyze", json={"graph": sample, "metrics": ["levels"]})
    assert r.status_code == 422
    assert "cycle" in r.json()["message"] and "V09 -> V01" in r.json()["message"]


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b"{not json", 400, "malformed JSON"),
    ({"graph": {"nodes": []}}, 422, "graph.nodes"),
    ({"graph": {"nodes": [{"id": "A"}], "edges": [{"source": "A", "target": "B"}]}}, 422,
     "edges[0].target"),
    ({"graph": {"nodes": [{"id": "A"}, {"id": "A"}]}}, 422, "duplicate"),
    ({"graph_id": "x", "metrics": ["telepathy"]}, 422, "metrics[0]"),
    ({"metrics": ["summary"]}, 422, "exactly one of graph or graph_id"),
    ({"graph_id": "nope"}, 404, "graph_id"),
    ({"graph": {"nodes": [{"id": "A", "phase": "delta"}]}}, 422, "graph.nodes[0].phase"),
    ({"graph": {"nodes": [{"id": "A"}]}, "metrics": ["shortest_path"]}, 422, "options.source"),
])
async def test_bad_input_names_the_field(gr: httpx.AsyncClient, body: Any, status: int,
                                         needle: str) -> None:
    if isinstance(body, bytes):
        r = await gr.post("/analyze", content=body, headers={"content-type": "application/json"})
    else:
        r = await gr.post("/analyze", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["message"]


async def test_legacy_envelope(gr: httpx.AsyncClient, sample: dict[str, Any]) -> None:
    r = await gr.post("/process", json={"data": {"graph": sample, "metrics": ["summary"]},
                                        "timestamp": 1700000000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["service"] == "graph_runtime"
    assert body["results"]["results"]["summary"]["nodes"] == 10
    assert body["processing_time_ms"] > 0
    bad = await gr.post("/process", json={"data": {"graph": {"nodes": "x"}}})
    assert bad.status_code == 422 and "data.graph.nodes" in bad.json()["message"]

