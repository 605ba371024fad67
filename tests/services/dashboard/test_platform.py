"""The dashboard over the optimized topology: three `bem serve` processes and a real Redis.

The tests share one platform (starting it is the expensive part) and run in file order:
all pass -> Redis outage (warn) and recovery -> the browser sees a killed cluster turn red
-> the killed cluster fails the platform. Each test brings the platform to the state it
needs itself (killing is idempotent), so any one of them also runs alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bem.runtime.health import worst
from tests.faults.support import wide_graph
from tests.support import REPO, RedisServer, Topology, redis_server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
OUTPUT = REPO / "test-output"
FAIL_RED = "rgb(207, 34, 46)"  # --fail in dashboard.css


class Platform:
    def __init__(self, topology: Topology, redis: RedisServer) -> None:
        self.topology = topology
        self.redis = redis
        self.dashboard = topology.url("dashboard")

    async def report(self, path: str = "/cluster-health") -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(self.dashboard + path)
        return r.status_code, r.json()

    async def until(self, check: Callable[[dict[str, Any]], bool], timeout: float = 30.0,
                    path: str = "/cluster-health") -> tuple[int, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            code, report = await self.report(path)
            if check(report):
                return code, report
            if time.monotonic() > deadline:
                raise AssertionError(f"dashboard never reached the expected state:\n{report}")
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    with redis_server() as redis, \
            Topology(["compute", "logic", "gateway"], redis_url=redis.url,
                     registry_ttl=2, pool_threshold=0) as topology:
        yield Platform(topology, redis)


def consistent(code: int, report: dict[str, Any]) -> None:
    """fail > warn > pass at every level, and 503 exactly when the platform fails."""
    for cluster in report["clusters"].values():
        statuses = [r["status"] for r in cluster["replicas"]]
        assert cluster["status"] == ("fail" if cluster["missing"] else worst(statuses))
        for replica in cluster["replicas"]:
            if "error" not in replica:
                checks = [c[0]["status"] for c in replica["checks"].values()]
                services = [s["status"] for s in replica["services"].values()]
                assert replica["status"] == worst([*checks, *services])
    assert report["status"] == worst(c["status"] for c in report["clusters"].values())
    assert code == (503 if report["status"] == "fail" else 200)


async def test_every_cluster_passes_from_the_registry(platform: Platform) -> None:
    code, report = await platform.until(
        lambda r: r["status"] == "pass" and r["source"] == "registry")
    consistent(code, report)
    assert set(report["clusters"]) == {"compute", "logic", "gateway"}
    instances = set()
    for name, cluster in report["clusters"].items():
        [replica] = cluster["replicas"]
        assert replica["cluster"] == name and replica["pid"] > 0
        instances.add(replica["instance"])
    assert len(instances) == 3
    assert all(s == {"status": "pass", "replicas": 1, "healthy": 1}
               for s in report["services"].values())

    code, compute = await platform.report("/clusters/compute/health")
    assert code == 200 and compute["name"] == "compute"
    assert set(compute["replicas"][0]["services"]) == {"dag_alpha", "sfde", "graph_runtime"}
    async with httpx.AsyncClient(timeout=30) as http:  # pool work: a worker starts for it
        answer = await http.post(platform.topology.url("graph_runtime") + "/analyze",
                                 json={"graph": wide_graph(1), "metrics": ["betweenness"]})
        assert answer.status_code == 200, answer.text
    _, overview = await platform.report("/overview")
    figures = overview["clusters"]["compute"]["replicas"][0]["metrics"]
    assert figures["pool"]["workers"] == 1 and figures["redis_up"] == 1


async def test_redis_outage_is_warn_then_recovers(platform: Platform) -> None:
    await platform.until(lambda r: r["status"] == "pass")
    platform.redis.stop()
    try:
        # Every process reports its Redis link as warn; the dashboard falls back to the
        # static addresses and still finds every cluster.
        code, report = await platform.until(
            lambda r: r["clusters"]["compute"]["status"] == "warn")
        assert report["source"] == "static (Redis unavailable)"
        assert set(report["clusters"]) == {"compute", "logic", "gateway"}
        assert report["clusters"]["compute"]["replicas"][0]["checks"][
            "redis:connection"][0]["status"] == "warn"
        assert report["status"] in ("warn", "fail")  # never better than its worst cluster
        consistent(code, report)
    finally:
        platform.redis.start()
    code, report = await platform.until(
        lambda r: r["status"] == "pass" and r["source"] == "registry")
    consistent(code, report)


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/system-deps)")
    return CHROMIUM


async def test_browser_shows_every_cluster_and_a_killed_one_turns_red(
        platform: Platform, chromium: str) -> None:
    from playwright.async_api import async_playwright, expect

    await platform.until(lambda r: r["status"] == "pass")
    origin = urlsplit(platform.dashboard).netloc
    requested: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(platform.dashboard + "/?refresh=0.5")
            for name in ("compute", "logic", "gateway"):
                card = page.locator(f'article[data-cluster="{name}"]')
                await expect(card).to_have_attribute("data-status", "pass", timeout=20_000)
            await expect(page.locator("#overall")).to_have_text("pass")

            platform.topology["compute"].kill()
            compute = page.locator('article[data-cluster="compute"]')
            await expect(compute).to_have_attribute("data-status", "fail", timeout=20_000)
            await expect(page.locator("#overall")).to_have_text("fail")
            pill = compute.locator("h2 .pill")
            # to_have_css retries: the page re-renders every 0.5 s, and a computed style read
            # from a card just replaced is empty
            await expect(pill).to_have_css("background-color", FAIL_RED)
            for name in ("logic", "gateway"):  # the others stay as they were
                await expect(page.locator(f'article[data-cluster="{name}"]')
                             ).to_have_attribute("data-status", "pass")
            OUTPUT.mkdir(exist_ok=True)
            await page.screenshot(path=str(OUTPUT / "dashboard-compute-killed.png"),
                                  full_page=True)
        finally:
            await browser.close()
    assert requested and all(urlsplit(u).netloc == origin for u in requested), requested


async def test_killed_cluster_fails_the_platform_and_stays_listed(platform: Platform) -> None:
    platform.topology["compute"].kill()
    code, report = await platform.until(lambda r: r["clusters"]["compute"]["status"] == "fail")
    consistent(code, report)
    assert code == 503 and report["status"] == "fail"
    assert {report["clusters"][n]["status"] for n in ("logic", "gateway")} == {"pass"}
    assert report["services"]["sfde"]["healthy"] == 0
    code, compute = await platform.report("/clusters/compute/health")
    assert code == 503 and compute["status"] == "fail"
    assert (await platform.report("/clusters/logic/health"))[0] == 200
    # Once its registry entries expire (REGISTRY_TTL=2) no replica is left at all: the
    # cluster stays listed, red, with its services missing.
    code, report = await platform.until(lambda r: not r["clusters"]["compute"]["replicas"])
    assert code == 503 and report["clusters"]["compute"] == {
        "status": "fail", "replicas": [], "missing": ["dag_alpha", "sfde", "graph_runtime"]}
