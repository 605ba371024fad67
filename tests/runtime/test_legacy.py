"""The old platform's POST /process envelope (runtime/legacy.py): shape choice, errors that
name `data.<field>`, the legacy request counter and the OpenAPI of the alternatives."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from bem.errors import ValidationFailed
from bem.runtime.legacy import choose, envelope_id, readdress, shapes
from bem.runtime.supervisor import Supervisor
from bem.services import spec
from tests.support import make_settings, metric_total, run_cluster, url_of

in_module_loop = pytest.mark.asyncio(loop_scope="module")  # the cluster's loop


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster() -> AsyncIterator[Supervisor]:
    async with run_cluster("compute", make_settings(workers=0)) as sup:
        yield sup


def table(service: str) -> list[tuple[str, frozenset[str]]]:
    s = spec(service)
    return [(x.name, x.fields) for x in shapes(s.get(str(s.legacy_operation)),
                                               s.legacy_payloads)]


@pytest.mark.parametrize(("data", "chosen"), [
    ({"graph": {}}, "POST /run"),
    ({}, "POST /run"),  # nothing to go by: the new body, whose errors say what is missing
    ({"dag_id": "d", "node_sequence": ["V01"]}, "dag_request"),
    ({"node_sequence": ["V01"]}, "dag_request"),  # a tie goes to the first declared
    ({"components": [], "node_sequence": []}, "components"),
    ({"graph": {}, "node_sequence": []}, "POST /run"),  # a tie with the new body: the new body
    ({"test": "data"}, None),
])
def test_the_shape_sharing_most_keys_wins(data: dict[str, object], chosen: str | None) -> None:
    s = spec("dag_alpha")
    shape = choose(shapes(s.get("run"), s.legacy_payloads), data)
    assert (shape.name if shape else None) == chosen


def test_every_service_declares_distinct_shapes() -> None:
    for service in ("dag_alpha", "functor_types", "callback_engine", "sfde", "graph_runtime",
                    "optimization"):
        names = [name for name, _ in table(service)]
        assert len(names) == len(set(names)) >= 2, service


def test_the_envelope_id_changes_with_the_envelope_only() -> None:
    one = envelope_id("2025-06-20T14:35:40.512337", "orchestrator", "req_1750430140")
    assert one == envelope_id("2025-06-20T14:35:40.512337", "orchestrator", "req_1750430140")
    assert one != envelope_id("2025-06-20T14:35:40.512338", "orchestrator", "req_1750430140")
    assert one != envelope_id("2025-06-20T14:35:40.512337", None, "req_1750430140")


@in_module_loop
async def test_errors_name_the_field_of_the_shape_meant(cluster: Supervisor) -> None:
    async with httpx.AsyncClient(base_url=url_of(cluster, "dag_alpha")) as http:
        cases = {
            "data": {"data": ["not", "an", "object"]},
            "data.node_sequence[0]": {"data": {"node_sequence": [7]}},
            "data.bogus": {"data": {"dag_id": "d", "bogus": 1}},
            "data.graph.nodes": {"data": {"graph": {"nodes": []}}},
        }
        for field, body in cases.items():
            r = await http.post("/process", json=body)
            assert r.status_code == 422, r.text
            assert r.json()["field"] == field, r.text
        unknown = (await http.post("/process", json={"data": {"test": "data"}})).json()
        assert unknown["field"] == "data"
        for listed in ("POST /run (graph, graph_id)", "dag_request (callback_type, dag_id",
                       "components (affinity_types, components"):
            assert listed in unknown["message"]
        missing = await http.post("/process", json={"timestamp": 1})
        assert missing.status_code == 422 and missing.json()["field"] == "data"
        endless = await http.post("/process", content=b'{"data": {}, "timestamp": Infinity}',
                                  headers={"content-type": "application/json"})
        assert endless.status_code == 422 and endless.json()["field"].startswith("timestamp")
        boolean = await http.post("/process", json={"data": {}, "timestamp": False})
        assert boolean.status_code == 422 and boolean.json()["field"].startswith("timestamp")
        # the old clients' own timestamps still pass: ISO text, and a number of seconds
        for stamp in ("2025-06-20T14:35:40.512337", 1750430140):
            answer = await http.post("/process", json={"data": {"test": "data"},
                                                       "timestamp": stamp})
            assert answer.json()["field"] == "data", answer.text  # past the envelope


@in_module_loop
async def test_every_request_is_counted_by_old_operation(cluster: Supervisor) -> None:
    async with httpx.AsyncClient(base_url=url_of(cluster, "dag_alpha")) as http:
        def count(operation: str, text: str) -> float:
            return metric_total(text, "bem_legacy_requests_total", service="dag_alpha",
                                cluster="compute", operation=operation)

        before = (await http.get("/metrics")).text
        assert (await http.post("/process", json={"data": {"node_sequence": ["V01"]}})
                ).status_code == 200
        await http.post("/process", json={"data": {"node_sequence": ["V77"]}})  # a 422
        await http.post("/process", json={"data": {"what": 1}})
        await http.post("/process", json={"data": 3})
        await http.post("/process", json={"data": {"graph": {"nodes": [{"id": "A"}]}}})
        after = (await http.get("/metrics")).text
    assert count("dag_request", after) - count("dag_request", before) == 2
    assert count("unrecognized", after) - count("unrecognized", before) == 2
    assert count("envelope", after) - count("envelope", before) == 1


@in_module_loop
async def test_openapi_shows_the_new_body_and_the_old_payloads(cluster: Supervisor) -> None:
    async with httpx.AsyncClient(base_url=url_of(cluster, "sfde")) as http:
        doc = (await http.get("/openapi.json")).json()
    post = doc["paths"]["/process"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    envelope = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    alternatives = {a["$ref"].rsplit("/", 1)[1] for a in envelope["properties"]["data"]["anyOf"]}
    assert alternatives == {"EvaluateRequest", "SfdeRequests", "OldComponents"}
    assert set(envelope["properties"]) == {"data", "timestamp", "source"}
    assert "sfde_requests" in doc["components"]["schemas"]["SfdeRequests"]["properties"]
    assert "`sfde_requests`" in post["description"] and "docs/migration.md" in post["description"]


def test_readdress_takes_a_backslash_in_a_field_literally() -> None:
    """A client's key is part of the field path, never a regex replacement escape (`\\u`
    made re.sub raise `bad escape`, answered as a 500)."""
    exc = ValidationFailed("attributes.a\\u1: bad; other: worse", field="attributes.a\\u1")
    got = readdress(exc, lambda name: f"data.{name}")
    assert got.field == "data.attributes.a\\u1"
    assert got.message == "data.attributes.a\\u1: bad; other: worse"
