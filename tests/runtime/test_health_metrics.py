"""What every service port serves: health documents, metrics, OpenAPI, error shape."""

from __future__ import annotations

import asyncio

import httpx

from bem.clusters import ALL_SERVICES
from bem.runtime.metrics import Metrics
from tests.support import make_settings, run_cluster, url_of


async def test_every_port_serves_health_metrics_and_openapi() -> None:
    async with run_cluster("single") as sup, httpx.AsyncClient(timeout=10) as http:
        for service in ALL_SERVICES:
            base = url_of(sup, service)
            health = await http.get(base + "/health")
            assert health.status_code == 200, (service, health.text)
            assert health.headers["content-type"] == "application/health+json"
            doc = health.json()
            assert doc["serviceId"] == service and doc["status"] in ("pass", "warn")
            assert all(":" in name or name == "uptime" for name in doc["checks"])
            for path in ("/health/live", "/health/ready"):
                assert (await http.get(base + path)).json()["status"] == "pass"
            cluster = (await http.get(base + "/cluster-health")).json()
            if service != "dashboard":  # the dashboard aggregates all clusters instead
                assert set(cluster["services"]) == set(ALL_SERVICES)
            metrics = (await http.get(base + "/metrics")).text
            assert f'bem_service_up{{cluster="single",service="{service}"}} 1.0' in metrics
            spec = (await http.get(base + "/openapi.json")).json()
            assert "/health" in spec["paths"] and "/metrics" in spec["paths"]
            assert (await http.get(base + "/docs")).status_code == 200
            missing = await http.get(base + "/no/such/route")
            assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_request_metrics_carry_route_template_service_and_cluster(sample: dict) -> None:
    async with run_cluster("graph_runtime") as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "graph_runtime")) as http:
        gid = (await http.post("/graphs", json=sample)).json()["graph_id"]
        await asyncio.gather(*(http.get(f"/graphs/{gid}") for _ in range(3)))
        await http.get("/graphs/unknown")
        text = (await http.get("/metrics")).text
    ok = ('bem_http_requests_total{cluster="graph_runtime",method="GET",'
          'route="/graphs/{graph_id}",service="graph_runtime",status="200"} 3.0')
    assert ok in text
    assert 'route="/graphs/{graph_id}",service="graph_runtime",status="404"} 1.0' in text
    assert "/graphs/" + gid not in text  # raw paths never become label values
    timed = ('bem_http_request_duration_seconds_count{cluster="graph_runtime",method="GET",'
             'route="/graphs/{graph_id}",service="graph_runtime"} 4.0')
    assert timed in text
    # the scrape itself is being served while the registry renders
    assert 'bem_http_requests_in_flight{cluster="graph_runtime",service="graph_runtime"} 1.0' \
        in text


def test_latency_buckets_are_upper_bounds_inclusive() -> None:
    metrics = Metrics("c")
    _count, latency = metrics.http.series("s", "GET", "/r", 200)
    for seconds in (0.0005, 0.0006, 0.001, 31.0):
        latency.observe(seconds)
    text = metrics.render().decode()
    labels = 'cluster="c",le="{}",method="GET",route="/r",service="s"'
    for le, n in (("0.0005", 1), ("0.001", 3), ("30.0", 3), ("+Inf", 4)):
        assert f"bem_http_request_duration_seconds_bucket{{{labels.format(le)}}} {n}.0" in text
    assert 'bem_http_request_duration_seconds_sum{cluster="c",method="GET",route="/r",' \
           'service="s"} 31.0021' in text


async def test_oversized_body_is_413_before_parsing() -> None:
    settings = make_settings(max_body_size=1000)
    async with run_cluster("graph_runtime", settings) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "graph_runtime")) as http:
        big = b'{"nodes": [' + b'{"id": "x"},' * 200 + b'{"id": "y"}]}'
        r = await http.post("/graphs", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "MAX_BODY_SIZE" in r.json()["message"]

        async def chunks():  # no Content-Length: counted while streaming
            for _ in range(20):
                yield b" " * 100

        r = await http.post("/graphs", content=chunks(),
                            headers={"content-type": "application/json"})
        assert r.status_code == 413


async def test_graph_size_limit_is_413_naming_the_limit(sample: dict) -> None:
    async with run_cluster("graph_runtime", make_settings(max_graph_nodes=5)) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "graph_runtime")) as http:
        r = await http.post("/analyze", json={"graph": sample})
        assert r.status_code == 413
        assert r.json()["message"] == ("graph.nodes: 10 nodes exceed the limit of 5 "
                                       "(MAX_GRAPH_NODES)")
