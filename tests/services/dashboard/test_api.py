"""The dashboard on real in-loop clusters (no Redis: static discovery)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bem.clusters import ALL_SERVICES
from bem.runtime.health import worst
from bem.services.dashboard import api as dashboard
from bem.services.dashboard.models import PlatformHealth
from tests.faults.support import wide_graph
from tests.support import make_settings, run_cluster, url_of


@pytest.fixture
async def gateway_alone() -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """Only the gateway runs: every backend's static address refuses connections."""
    async with run_cluster("gateway") as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "dashboard"), timeout=10) as http:
        yield sup, http


async def test_unreachable_clusters_fail_with_503(gateway_alone: Any) -> None:
    sup, http = gateway_alone
    r = await http.get("/cluster-health")
    assert r.status_code == 503 and r.headers["cache-control"] == "no-store"
    report = r.json()
    assert report["status"] == "fail" and report["source"] == "static"
    assert set(report["clusters"]) == {"compute", "logic", "gateway"}
    gateway = report["clusters"]["gateway"]
    assert gateway["status"] == "pass" and len(gateway["replicas"]) == 1
    assert gateway["replicas"][0]["instance"] == sup.runtime.instance_id
    compute = report["clusters"]["compute"]
    assert compute["status"] == "fail"
    [dead] = compute["replicas"]  # three unreachable ports of one cluster: one entry
    assert "unreachable" in dead["error"] and "instance" not in dead
    assert set(dead["services"]) == {"dag_alpha", "sfde", "graph_runtime"}
    assert report["services"]["sfde"] == {"status": "fail", "replicas": 1, "healthy": 0}
    assert report["services"]["ecm_ws"] == {"status": "pass", "replicas": 1, "healthy": 1}

    assert (await http.get("/clusters/gateway/health")).status_code == 200
    logic = await http.get("/clusters/logic/health")
    assert logic.status_code == 503 and logic.json()["name"] == "logic"
    unknown = await http.get("/clusters/mainframe/health")
    assert unknown.status_code == 404 and unknown.json()["field"] == "name"
    assert "'mainframe'" in unknown.json()["message"]
    assert "compute, gateway, logic" in unknown.json()["message"]


async def test_in_process_callers_get_the_report_not_an_error(gateway_alone: Any) -> None:
    sup, http = gateway_alone
    report = await sup.runtime.client.call(dashboard.cluster_health)
    assert isinstance(report, PlatformHealth) and report.status == "fail"
    local = await http.get("/cluster-health/local")  # this process only, as on other ports
    assert local.status_code == 200 and local.json()["cluster"] == "gateway"
    assert set(local.json()["services"]) == {"graphql", "ecm_ws", "dashboard"}
    spec = (await http.get("/openapi.json")).json()
    assert spec["paths"]["/cluster-health"]["get"]["summary"] == "Cluster Health"


async def test_page_is_self_contained(gateway_alone: Any) -> None:
    _sup, http = gateway_alone
    r = await http.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing off-site
    assert "@import" not in html and "url(" not in html
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S).group(1)  # type: ignore
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in csp  # the inline block is the allowed one


async def test_single_process_passes_with_metrics(sample: dict[str, Any]) -> None:
    # POOL_THRESHOLD 0: the analysis below goes to the pool, which starts a worker for it.
    async with run_cluster("single", make_settings(pool_threshold=0)) as sup, \
            httpx.AsyncClient(timeout=10) as http:
        dash = url_of(sup, "dashboard")
        r = await http.get(dash + "/cluster-health")
        assert r.status_code == 200, r.text
        report = r.json()
        assert list(report["clusters"]) == ["single"]
        [replica] = report["clusters"]["single"]["replicas"]
        # embedded mode may warn (e.g. an event log that is not durable), never fail
        statuses = [s["status"] for s in replica["services"].values()]
        assert report["status"] == worst(statuses) != "fail"
        assert {s for s, v in report["services"].items() if v["healthy"] == 1} == \
            set(ALL_SERVICES)
        assert "metrics" not in replica

        graphs = url_of(sup, "graph_runtime") + "/graphs"
        for _ in range(5):
            assert (await http.post(graphs, json=sample)).status_code == 201
        analyze = url_of(sup, "graph_runtime") + "/analyze"
        assert (await http.post(analyze, json={"graph": sample})).status_code == 200
        # estimated over INLINE_BUDGET_MS: pool work, so a worker starts for it
        pool_work = {"graph": wide_graph(1), "metrics": ["betweenness"]}
        assert (await http.post(analyze, json=pool_work)).status_code == 200
        overview = (await http.get(dash + "/overview")).json()
        figures = overview["clusters"]["single"]["replicas"][0]["metrics"]
        gr = figures["services"]["graph_runtime"]
        assert gr["requests_per_s"] > 0 and gr["latency_p95_ms"] > 0
        assert figures["pool"]["workers"] == 1 and figures["window_s"] > 0
        # the loop-lag sampler of this process has run (20 samples a second)
        assert figures["loop_lag"]["max_ms"] is not None


async def test_api_keys_guard_the_page_but_not_health() -> None:
    async with run_cluster("gateway", make_settings(BEM_API_KEYS="k1")) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "dashboard"), timeout=10) as http:
        assert (await http.get("/")).status_code == 401
        assert (await http.get("/overview")).status_code == 401
        page = await http.get("/?api_key=k1")
        assert page.status_code == 200 and "api_key" in page.text  # the page passes it on
        assert (await http.get("/overview?api_key=k1")).status_code == 200
        assert (await http.get("/cluster-health")).status_code == 503  # exempt; backends down
        spec = (await http.get("/openapi.json?api_key=k1")).json()
        assert "parameters" not in spec["paths"]["/cluster-health"]["get"]
