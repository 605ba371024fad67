"""The dashboard's `/traces` page draws the slowest recent traces per service as span
waterfalls, in headless Chromium against a real single cluster that traces. Its collector
is down (a closed port): the page reads the process's own span buffer, which does not need
one, and the dropped spans are counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bem.runtime.supervisor import Supervisor
from tests.services.dashboard.test_platform import CHROMIUM_ARGS, OUTPUT, chromium
from tests.support import free_port, make_settings, run_cluster, url_of

__all__ = ["chromium"]  # the fixture, shared with test_platform.py


@pytest.fixture
async def cluster() -> AsyncIterator[Supervisor]:
    settings = make_settings(workers=0,
                             otel_exporter_otlp_endpoint=f"http://127.0.0.1:{free_port()}")
    async with run_cluster("single", settings) as sup:
        yield sup


async def test_the_page_draws_waterfalls_of_the_slowest_traces(
        cluster: Supervisor, chromium: str, sample: dict[str, Any]) -> None:
    from playwright.async_api import async_playwright, expect

    dashboard = url_of(cluster, "dashboard")
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(2):
            r = await http.post(url_of(cluster, "dag_alpha") + "/run", json={"graph": sample})
            assert r.status_code == 200
        data = (await http.get(dashboard + "/traces/slowest")).json()
    assert data["enabled"] and data["services"]["dag_alpha"][0]["name"] == "POST /run"
    requested: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(dashboard + "/traces?refresh=0.5")
            await expect(page.locator("#state")).to_have_text("tracing on", timeout=20_000)
            trace = page.locator('section[data-service="dag_alpha"] figure.trace').first
            await expect(trace).to_be_visible(timeout=20_000)
            root = trace.locator('g.span[data-depth="0"]')
            await expect(root).to_have_attribute("data-span", "POST /run")
            await expect(trace.locator('g.span[data-span="POST /analyze"]')).to_have_count(1)
            assert await trace.locator("g.span").count() >= 5
            # Each child's bar lies within its parent's: the waterfall is to scale.
            bars = await trace.locator("g.span").evaluate_all(
                "gs => gs.map(g => { const r = g.querySelector('rect');"
                " return [Number(g.dataset.depth), r.x.baseVal.value,"
                " r.x.baseVal.value + r.width.baseVal.value]; })")
            x0, x1 = bars[0][1], bars[0][2]
            assert all(x0 - 0.5 <= x <= end <= x1 + 1.5 for _d, x, end in bars[1:]), bars
            OUTPUT.mkdir(exist_ok=True)
            await page.screenshot(path=str(OUTPUT / "dashboard-traces.png"), full_page=True)
        finally:
            await browser.close()
    origin = urlsplit(dashboard).netloc
    assert requested and all(urlsplit(u).netloc == origin for u in requested), requested


async def test_without_tracing_the_page_says_how_to_turn_it_on() -> None:
    async with run_cluster("single", make_settings(workers=0)) as sup, \
            httpx.AsyncClient(timeout=30) as http:
        data = (await http.get(url_of(sup, "dashboard") + "/traces/slowest")).json()
        page = await http.get(url_of(sup, "dashboard") + "/traces")
    assert data == {"enabled": False, "services": {}, "message": data["message"]}
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in data["message"]
    assert page.status_code == 200 and "Slowest recent traces" in page.text
