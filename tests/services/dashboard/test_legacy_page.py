"""The dashboard page shows the old-platform requests (bem_legacy_requests_total), in headless
Chromium against a real single cluster: none at first, then each old operation sent, with
its count, so an operator sees when the last old client is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from bem.compat.cases.process import bodies
from bem.runtime.supervisor import Supervisor
from tests.services.dashboard.test_platform import CHROMIUM_ARGS, OUTPUT, chromium
from tests.support import make_settings, run_cluster, url_of

__all__ = ["chromium"]  # the fixture, shared with test_platform.py


@pytest.fixture
async def cluster() -> AsyncIterator[Supervisor]:
    async with run_cluster("single", make_settings(workers=0)) as sup:
        yield sup


async def send_old_requests(sup: Supervisor) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(2):
            r = await http.post(url_of(sup, "dag_alpha") + "/process",
                                json={"data": bodies()["pipeline"]["dag_alpha"]})
            assert r.status_code == 200, r.text
        r = await http.post(url_of(sup, "sfde") + "/process",
                            json={"data": bodies()["pipeline"]["sfde"]})
        assert r.status_code == 200, r.text
        r = await http.post(url_of(sup, "dag_alpha") + "/process", json={"data": {"x": 1}})
        assert r.status_code == 422


async def test_the_page_counts_old_requests_by_service_and_operation(
        cluster: Supervisor, chromium: str) -> None:
    from playwright.async_api import async_playwright, expect

    dashboard = url_of(cluster, "dashboard")
    requested: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(dashboard + "/?refresh=0.5")
            none = page.locator('#legacy [data-legacy="none"]')
            await expect(none).to_be_visible(timeout=20_000)

            await send_old_requests(cluster)
            rows = {"dag_alpha/dag_request": "2", "sfde/sfde_requests": "1",
                    "dag_alpha/unrecognized": "1"}
            for key, count in rows.items():
                row = page.locator(f'#legacy tr[data-legacy="{key}"]')
                await expect(row.locator("td").nth(2)).to_have_text(count, timeout=20_000)
            await expect(page.locator("#legacy tbody tr")).to_have_count(len(rows))
            await expect(none).to_have_count(0)
            OUTPUT.mkdir(exist_ok=True)
            await page.screenshot(path=str(OUTPUT / "dashboard-legacy-requests.png"),
                                  full_page=True)
        finally:
            await browser.close()
    origin = urlsplit(dashboard).netloc
    assert requested and all(urlsplit(u).netloc == origin for u in requested), requested
