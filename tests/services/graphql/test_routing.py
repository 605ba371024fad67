"""The gateway in front of separate compute and logic processes sharing a real Redis:
REST routing `/{service}/{path}` and GraphQL resolvers over HTTP."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bem.clusters import PLACEMENT
from bem.gateway.routing import (
    idempotent_routes,
    is_idempotent,
    request_headers,
    response_headers,
    routed_service,
    target_of,
)
from bem.services import spec
from tests.support import Topology, graph_input, redis_server

pytestmark = pytest.mark.slow

HOP_TIMEOUT = 3  # seconds


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    # A short per-hop time-out, so that a hung backend is seen to be bounded.
    with redis_server() as redis, \
            Topology(["compute", "logic", "gateway"], redis_url=redis.url,
                     request_timeout=HOP_TIMEOUT) as topology:
        yield topology


@pytest.fixture
def gateway(topo: Topology) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=topo.url("graphql"), timeout=20) as http:
        yield http


def gql(http: httpx.Client, query: str, variables: dict[str, Any] | None = None) -> Any:
    answer = http.post("/graphql", json={"query": query, "variables": variables or {}})
    assert answer.status_code == 200, answer.text
    return answer.json()


def calls_over_http(http: httpx.Client) -> dict[str, float]:
    """target service -> calls the gateway process made to it over HTTP (from /metrics)."""
    found: dict[str, float] = {}
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("bem_service_calls_total{") and 'transport="http"' in line:
            target = line.split('target="', 1)[1].split('"', 1)[0]
            found[target] = found.get(target, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def test_rest_routes_to_the_backends(gateway: httpx.Client, topo: Topology,
                                     sample: dict[str, Any]) -> None:
    direct = httpx.get(topo.url("graph_runtime") + "/sample").json()
    assert gateway.get("/graph_runtime/sample").json() == direct

    stored = gateway.post("/graph_runtime/graphs", json=sample)
    assert stored.status_code == 201, stored.text
    gid = stored.json()["graph_id"]
    fetched = gateway.get(f"/graph_runtime/graphs/{gid}")
    assert fetched.status_code == 200 and fetched.json()["graph_id"] == gid
    assert fetched.headers["content-type"] == "application/json"
    assert "ratelimit" in fetched.headers  # the gateway's own headers are added

    answer = gateway.post("/sfde/evaluate", json={"formula": "simple_beam_udl",
                                                  "params": {"w": 10, "L": 6}})
    assert answer.status_code == 200 and answer.json()["outputs"]["max_moment"] == 45.0
    # The path goes on percent-encoded as sent: the backend decodes it itself.
    missing = gateway.get("/sfde/formulas/no%20such%3F")
    assert missing.status_code == 404 and "'no such?'" in missing.json()["message"]


def test_big_answers_stream_through_and_head_has_no_body(gateway: httpx.Client,
                                                          topo: Topology) -> None:
    """Over BUFFER_LIMIT (1 MB) an answer is streamed from the replica, not read whole."""
    nodes = [{"id": f"N{i:05d}", "attrs": {"note": f"{i:05d}" + "x" * 200}}
             for i in range(6000)]
    edges = [{"source": f"N{i:05d}", "target": f"N{i + 1:05d}"} for i in range(5999)]
    stored = gateway.post("/graph_runtime/graphs", json={"nodes": nodes, "edges": edges})
    assert stored.status_code == 201, stored.text
    path = f"/graphs/{stored.json()['graph_id']}"
    direct = httpx.get(topo.url("graph_runtime") + path)
    path = "/graph_runtime" + path
    with gateway.stream("GET", path) as answer:
        body = b"".join(answer.iter_raw())
        assert answer.status_code == 200
    assert len(body) > (1 << 20) and body == direct.content
    head = gateway.head(path)  # headers only, whatever length they announce
    assert head.status_code == httpx.head(direct.url).status_code and head.content == b""
    assert gateway.get("/sfde/formulas/roi").status_code == 200  # the connections still serve


def test_backend_errors_pass_through(gateway: httpx.Client) -> None:
    invalid = gateway.post("/graph_runtime/analyze", json={"graph_id": "x",
                                                           "metrics": ["telepathy"]})
    assert invalid.status_code == 422 and "metrics[0]" in invalid.json()["message"]
    malformed = gateway.post("/graph_runtime/analyze", content=b"{nope",
                             headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["message"]
    unknown = gateway.get("/graph_runtime/no/such/route")
    assert unknown.status_code == 404


def test_unknown_service_is_a_404_naming_it(gateway: httpx.Client) -> None:
    for path in ("/teleporter/anything", "/dashboard/cluster-health", "/graphql/x"):
        answer = gateway.get(path)
        assert answer.status_code == 404, path
        body = answer.json()
        assert body["field"] == "service" and repr(path.split("/")[1]) in body["message"]
        assert "graph_runtime" in body["message"]  # names what is routable


def test_graphql_reaches_every_service_over_http(gateway: httpx.Client,
                                                 sample: dict[str, Any]) -> None:
    before = calls_over_http(gateway)
    mutation = gql(gateway, """mutation($g: GraphInput!, $events: [EventInput!]!) {
        storeGraph(graph: $g) { graphId }
        runDag(graph: $g) { manufacturingScore criticalPath { length } }
        submitEvents(events: $events) { durable events { eventId } } }""",
                   {"g": graph_input(sample),
                    "events": [{"idempotencyKey": "routing-1", "type": "decay",
                                "node": "V01"}]})["data"]
    assert mutation["runDag"]["criticalPath"]["length"] == 12.0
    assert mutation["submitEvents"]["durable"] is True  # the Redis stream
    event_id = mutation["submitEvents"]["events"][0]["eventId"]
    data = gql(gateway, """query($id: ID!, $event: ID!, $select: JSON!) {
        graph(id: $id) { analysis(metrics: [critical_path]) { criticalPath { length } } }
        evaluate(formula: "roi", params: {final_value: 150, cost: 100}) {
          outputs { name value } }
        functorTypes { types { name } }
        selectOptions(problem: $select) { optimal }
        event(id: $event) { eventId }
        eventStats
        health { status clusters { name status } } }""",
               {"id": mutation["storeGraph"]["graphId"], "event": event_id,
                "select": {"components": [{"id": "A", "options": [{"id": "x"}]}],
                           "time_limit": HOP_TIMEOUT - 1}})
    assert "errors" not in data, data["errors"]
    data = data["data"]
    assert data["graph"]["analysis"]["criticalPath"]["length"] == 12.0
    roi = {o["name"]: o["value"] for o in data["evaluate"]["outputs"]}
    assert roi["roi"] == pytest.approx(0.5)
    assert "aggregator" in {t["name"] for t in data["functorTypes"]["types"]}
    assert data["selectOptions"]["optimal"] is True
    assert data["event"]["eventId"] == event_id and data["eventStats"]["durable"] is True
    assert {c["name"] for c in data["health"]["clusters"]} == {"compute", "logic", "gateway"}
    after = calls_over_http(gateway)
    for target in ("graph_runtime", "sfde", "dag_alpha", "functor_types", "callback_engine",
                   "optimization"):
        assert after.get(target, 0) > before.get(target, 0), target


def test_graphql_errors_keep_the_backend_message_over_http(gateway: httpx.Client) -> None:
    body = gql(gateway, '{ analyze(graphId: "x", options: {topK: 0}) { graphId } }')
    error = body["errors"][0]
    assert "options.top_k" in error["message"]
    assert (error["extensions"]["status"], error["extensions"]["service"]) == (422,
                                                                                "graph_runtime")


def test_a_hung_backend_is_a_bounded_error(gateway: httpx.Client, topo: Topology) -> None:
    """SIGSTOP: the kernel still accepts connections, nothing answers."""
    topo["compute"].signal(signal.SIGSTOP)
    try:
        body = gql(gateway, "{ sampleGraph { name } }")
        error = body["errors"][0]
        assert (error["extensions"]["code"], error["extensions"]["status"]) == ("timeout", 504)
        assert f"within {HOP_TIMEOUT} s" in error["message"]
        answer = gateway.get("/graph_runtime/sample")
        assert answer.status_code == 504 and "graph_runtime" in answer.json()["message"]
    finally:
        topo["compute"].signal(signal.SIGCONT)


def test_a_backend_that_is_down_is_a_clear_error(gateway: httpx.Client,
                                                 topo: Topology) -> None:
    """Last in the module: it stops the compute cluster."""
    topo["compute"].kill()
    body = gql(gateway, "{ sampleGraph { name } }")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "service_unavailable"
    assert error["extensions"]["status"] == 503 and "graph_runtime" in error["message"]
    answer = gateway.get("/graph_runtime/sample")
    assert answer.status_code == 503
    assert answer.json()["error"] == "service_unavailable"
    assert "graph_runtime is unavailable" in answer.json()["message"]
    assert answer.headers["retry-after"] == "1"


# --- the header rules, on their own ----------------------------------------------------------
def make_scope(headers: list[tuple[str, str]], raw_path: bytes = b"/x",
               query: bytes = b"", path: str = "/x") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "raw_path": raw_path,
            "query_string": query, "headers": [(k.encode(), v.encode()) for k, v in headers],
            "client": ("10.0.0.7", 5555), "scheme": "https", "server": ("gw", 443)}


@pytest.mark.parametrize(("raw", "path", "query", "keyed", "target"), [
    (b"/sfde/formulas/a%20b", "/sfde/formulas/a b", b"", False, "/formulas/a%20b"),
    (b"/sfde/", "/sfde/", b"", False, "/"),
    (b"/sfde/x", "/sfde/x", b"n=1&api_key=k&m=2", True, "/x?n=1&m=2"),
    (b"/sfde/x", "/sfde/x", b"n=1&api_key=k", False, "/x?n=1&api_key=k"),
    # the client encoded the service name itself: the decoded rest is re-encoded
    (b"/sf%64e/formulas/a%20b", "/sfde/formulas/a b", b"", False, "/formulas/a%20b"),
])
def test_target_keeps_the_path_as_sent(raw: bytes, path: str, query: bytes, keyed: bool,
                                       target: str) -> None:
    assert target_of(make_scope([], raw, query, path), "sfde", keyed) == target


ROUTABLE = frozenset(PLACEMENT.routable())


def test_only_routable_services_are_routed() -> None:
    assert routed_service("/sfde/formulas", ROUTABLE) == "sfde"
    assert routed_service("/graph_runtime/", ROUTABLE) == "graph_runtime"
    for path in ("/sfde", "/graphql/x", "/dashboard/cluster-health", "/health/live", "/"):
        assert routed_service(path, ROUTABLE) is None, path


def test_hop_by_hop_headers_are_not_forwarded() -> None:
    scope = make_scope([("host", "gw"), ("connection", "keep-alive, x-trace-hop"),
                        ("keep-alive", "timeout=5"), ("x-trace-hop", "1"),
                        ("te", "trailers"), ("content-length", "3"), ("accept", "*/*"),
                        ("expect", "100-continue"),
                        ("x-api-key", "secret"), ("authorization", "Bearer secret"),
                        ("x-forwarded-for", "192.0.2.1")])
    sent = dict(request_headers(scope, strip_credentials=True))
    assert sent == {b"accept": b"*/*", b"x-forwarded-for": b"192.0.2.1, 10.0.0.7",
                    b"x-forwarded-proto": b"https"}
    kept = dict(request_headers(scope, strip_credentials=False))
    assert kept[b"authorization"] == b"Bearer secret" and kept[b"x-api-key"] == b"secret"

    answer = [(b"Connection", b"close, x-hop"), (b"x-hop", b"1"),
              (b"transfer-encoding", b"chunked"), (b"date", b"Tue, 01 Dec 2026 08:00:00 GMT"),
              (b"content-type", b"application/json")]
    assert response_headers(answer) == [(b"content-type", b"application/json")]


def test_idempotency_comes_from_the_method_and_the_service_spec() -> None:
    graph_runtime = idempotent_routes(spec("graph_runtime"))
    assert is_idempotent(graph_runtime, "GET", "/graphs/abc")
    assert is_idempotent(graph_runtime, "POST", "/analyze")  # marked idempotent
    assert is_idempotent(graph_runtime, "POST", "/graphs")  # content-addressed store
    assert is_idempotent(graph_runtime, "POST", "/process")  # the envelope of analyze
    assert not is_idempotent(graph_runtime, "POST", "/proces")
    assert not is_idempotent(graph_runtime, "DELETE", "/graphs/abc")
    assert is_idempotent(idempotent_routes(spec("sfde")), "POST", "/evaluate")
