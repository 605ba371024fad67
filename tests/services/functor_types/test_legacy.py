"""functor_types' old /process payloads become validation and compatibility, for real: the
answer is POST /validate and POST /compatibility of what the old calculations describe, and
a bad one is a 422 naming its field.

Bodies: neon/json_transformer.py transform_for_functor_types (bem/compat/cases/
process_bodies.json), tests/test_phase2_container_orchestration.py's components.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bem.compat.cases.process import PHASE2_DATA, bodies
from tests.support import make_settings, old_process, run_cluster, url_of

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ft() -> AsyncIterator[httpx.AsyncClient]:
    async with run_cluster("single", make_settings(workers=0),
                           services=["functor_types"]) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "functor_types"), timeout=30) as http:
        yield http


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await http.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def paths_renamed(report: dict[str, Any], name: str) -> dict[str, Any]:
    for component in report["components"]:
        for item in (*component["errors"], *component["suggestions"]):
            item["path"] = item["path"].replace("components[", f"{name}[", 1)
    return report


async def test_old_calculations_are_validated_against_their_types(ft: httpx.AsyncClient
                                                                  ) -> None:
    old = bodies()["pipeline"]["functor_types"]  # 3 spatial + 3 aggregation entries
    results = (await old_process(ft, old))["results"]
    spatial = [{"id": c["component_id"], "functor_type": "stateless_spatial", "attrs": dict(
        zip(["centroid_x", "centroid_y", "centroid_z"], c["centroid"], strict=True),
        **dict(zip(["bbox_x_mm", "bbox_y_mm", "bbox_z_mm"], c["bbox"], strict=True)))}
        for c in old["spatial_calculations"]]
    aggregation = [{"id": c["component_id"], "functor_type": "aggregator", "attrs": dict(
        volume_cm3=c["volume"], area_m2=c["area"],
        **dict(zip(["length_mm", "width_mm", "height_mm"], c["dimensions"], strict=True)))}
        for c in old["aggregation_calculations"]]
    expected_spatial = await post(ft, "/validate", {"components": spatial})
    expected_aggregation = await post(ft, "/validate", {"components": aggregation})
    validation = results["validation"]
    assert validation["spatial_calculations"] == paths_renamed(expected_spatial,
                                                               "spatial_calculations")
    assert validation["aggregation_calculations"] == paths_renamed(
        expected_aggregation, "aggregation_calculations")
    # what the new types need and the old calculations lack, e.g. the alpha attributes
    first = validation["spatial_calculations"]["components"][0]
    assert "spatial_calculations[0].attrs.component_density" in {e["path"]
                                                                 for e in first["errors"]}
    expected = await post(ft, "/compatibility", {
        "placements": [{"functor_type": "stateless_spatial", "phase": p}
                       for p in ("alpha", "beta", "gamma")],
        "links": [{"source": "stateless_spatial", "target": "aggregator"}]})
    assert results["compatibility"] == expected
    assert [p["compatible"] for p in expected["placements"]] == [True, False, False]
    assert expected["links"][0]["compatible"] is False  # alpha may not skip beta


async def test_no_calculations_still_answer_the_compatibility(ft: httpx.AsyncClient) -> None:
    old = bodies()["test_phase1_orchestrator"]["functor_types"]  # both lists empty
    results = (await old_process(ft, {**old, "execution_mode": "beta"}))["results"]
    assert results["validation"] == {"spatial_calculations": None,
                                     "aggregation_calculations": None}
    [placement] = results["compatibility"]["placements"]
    assert (placement["phase"], placement["compatible"]) == ("beta", False)
    assert results["compatibility"]["links"] == []


async def test_old_components_are_validated_as_the_nodes_they_become(ft: httpx.AsyncClient
                                                                     ) -> None:
    results = (await old_process(ft, PHASE2_DATA))["results"]
    expected = await post(ft, "/validate", {"components": [
        {"id": c["id"], "attrs": {k: v for k, v in c.items() if k != "id"}}
        for c in PHASE2_DATA["components"]]})
    assert results["validation"] == expected
    assert {c["valid"] for c in expected["components"]} == {False}
    new = await old_process(ft, {"components": [{"id": "V01", "functor": "evaluate_manufacturing",
                                             "phase": "alpha", "attrs": {}}]})
    assert new["results"]["invalid"] == 1  # the new body inside the envelope: POST /validate


@pytest.mark.parametrize(("data", "field", "needle"), [
    ({"spatial_calculations": [], "functor_type": "stateful"}, "data.functor_type",
     "unknown functor type 'stateful'"),
    ({"spatial_calculations": [], "execution_mode": "sideways"}, "data.execution_mode",
     "known: cross_phase, alpha"),
    ({"spatial_calculations": [{"component_id": "A", "centroid": [1, 2], "bbox": [1, 2, 3]}]},
     "data.spatial_calculations[0].centroid", "at least 3 items"),
    ({"aggregation_calculations": [{"component_id": "A", "volume": "big", "area": 1,
                                    "dimensions": [1, 2, 3]}]},
     "data.aggregation_calculations[0].volume", "valid number"),
    ({"spatial_calculations": [], "functor_type": "stateless", "extra": 1}, "data.extra",
     "Extra inputs"),
])
async def test_bad_old_calculations_are_422_naming_the_field(
        ft: httpx.AsyncClient, data: dict[str, Any], field: str, needle: str) -> None:
    error = await old_process(ft, data, status=422)
    assert error["field"] == field, error
    assert needle in error["message"], error
