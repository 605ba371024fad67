"""Without Redis: the gateway finds a backend at its static address (BACKEND_COMPUTE_URL,
the service's port) and reaches it over HTTP, for REST routing and GraphQL alike."""

from __future__ import annotations

import httpx

from bem.runtime.supervisor import Supervisor
from tests.services.graphql.client import gql
from tests.support import make_settings, run_cluster, url_of


def requests_served(sup: Supervisor, route: str) -> float:
    """Requests a service process answered on `route` (its own metrics)."""
    total = 0.0
    for metric in sup.runtime.metrics.registry.collect():
        for s in metric.samples:
            if s.name == "bem_http_requests_total" and s.labels["route"] == route:
                total += s.value
    return total


async def test_static_backend_address() -> None:
    async with run_cluster("graph_runtime") as backend:
        settings = make_settings(graph_runtime_port=backend.ports["graph_runtime"],
                                 backend_compute_url="http://127.0.0.1")
        async with run_cluster("graphql", settings) as gateway, \
                httpx.AsyncClient(base_url=url_of(gateway, "graphql"), timeout=10) as http:
            routed = await http.get("/graph_runtime/sample")
            assert routed.status_code == 200 and len(routed.json()["nodes"]) == 10
            data = await gql(http, "{ sampleGraph { name } }")
            assert data["sampleGraph"]["name"] == "BEM sample project"
            assert requests_served(backend, "/sample") == 2  # both crossed HTTP

    # The backend gone, the same gateway settings give a clear 503 / GraphQL error.
    async with run_cluster("graphql", settings) as gateway, \
            httpx.AsyncClient(base_url=url_of(gateway, "graphql"), timeout=10) as http:
        down = await http.get("/graph_runtime/sample")
        assert down.status_code == 503 and down.headers["retry-after"] == "1"
        assert "graph_runtime is unavailable" in down.json()["message"]
        body = await gql(http, "{ sampleGraph { name } }", expect_errors=True)
        assert body["errors"][0]["extensions"]["code"] == "service_unavailable"
