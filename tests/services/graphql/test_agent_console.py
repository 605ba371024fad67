"""The old agent console itself, frontend/agent_console_graphql.html of Cideation/Endpoint, in
headless Chromium against a real `bem serve single`.

Nothing of the page is changed. It hardcodes http://localhost:8000 and ws://localhost:8000:
Chromium maps that address to the cluster's gateway port (--host-resolver-rules), and the
page itself is served at http://localhost:8000/agent_console_graphql.html, so its requests
are same-origin as they were on the old server (which had no CORS). Its CDN scripts
(unpkg.com) are answered from the same package versions installed with npm into
test-output/agent-console/ (a file a package does not have is a 404, as unpkg answers:
@apollo/client 3.8.0 ships no apollo-client.min.js, and the console never uses Apollo).

The old page is not ours to commit: it comes from a checkout of github.com/Cideation/Endpoint
(BEM_ENDPOINT_DIR, by default /work/endpoint) or a bare mirror of it
(BEM_ENDPOINT_GIT, by default /work/.mirror/Cideation+Endpoint/repo). Without either the
test is skipped, saying so (git clone https://github.com/Cideation/Endpoint to get one).

The console loads the project graph and shows every node, a user clicks a node, an affinity
type and Execute, the result arrives; a pulse another client triggers reaches the console
through /ws/cytoscape. The screenshot goes to test-output/agent-console.png.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bem.compat.cases import graphql as old
from tests.services.dashboard.test_platform import CHROMIUM, CHROMIUM_ARGS
from tests.support import REPO, Topology

pytestmark = pytest.mark.slow

ENDPOINT = Path(os.environ.get("BEM_ENDPOINT_DIR", "/work/endpoint"))
ENDPOINT_GIT = Path(os.environ.get("BEM_ENDPOINT_GIT", "/work/.mirror/Cideation+Endpoint/repo"))
PAGE = "frontend/agent_console_graphql.html"
PAGE_URL = "http://localhost:8000/agent_console_graphql.html"
OUTPUT = REPO / "test-output"
CDN_DIR = OUTPUT / "agent-console"
# The <script> tags of the page, package by package.
PACKAGES = {"cytoscape": "3.24.0", "@apollo/client": "3.8.0", "graphql": "16.8.0"}
SAMPLE_NODES = [f"V{i:02d}" for i in range(1, 11)]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def console_page() -> str:
    page = ENDPOINT / PAGE
    if page.is_file():
        return page.read_text()
    if ENDPOINT_GIT.is_dir():
        shown = subprocess.run(["git", "--git-dir", str(ENDPOINT_GIT), "show", f"HEAD:{PAGE}"],
                               capture_output=True, text=True, check=False)
        if shown.returncode == 0:
            return shown.stdout
    pytest.skip(f"the old agent console is not on this machine ({page}, {ENDPOINT_GIT}): set "
                f"BEM_ENDPOINT_DIR to a checkout of https://github.com/Cideation/Endpoint")


def installed(package: str) -> str | None:
    manifest = CDN_DIR / "node_modules" / package / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.is_file() else None


@pytest.fixture(scope="module")
def cdn() -> Path:
    """The page's CDN packages, installed once with npm (never committed: test-output/)."""
    wanted = [f"{name}@{version}" for name, version in PACKAGES.items()
              if installed(name) != version]
    if wanted:
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: apt-get install npm (scripts/system-deps)")
        CDN_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts",
             "--prefix", str(CDN_DIR), *wanted], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"npm install {' '.join(wanted)} failed:\n{done.stderr[-2000:]}")
    return CDN_DIR / "node_modules"


@pytest.fixture(scope="module")
def platform() -> Iterator[Topology]:
    with Topology(["single"]) as topology:  # embedded defaults, as ./scripts/up runs it
        yield topology


def unpkg_file(modules: Path, url: str) -> Path | None:
    """https://unpkg.com/<package>@<version>/<path> as a file of the installed package."""
    parts = urlsplit(url).path.lstrip("/").split("/")
    scoped = parts[0].startswith("@")
    spec, rest = ("/".join(parts[:2]), parts[2:]) if scoped else (parts[0], parts[1:])
    name, _, version = spec.rpartition("@")
    if PACKAGES.get(name) != version:
        return None
    path = (modules / name).joinpath(*rest).resolve()
    return path if path.is_file() and path.is_relative_to(modules.resolve()) else None


def trigger_pulse(platform: Topology) -> dict[str, Any]:
    """A pulse another old client triggers (the demo script's TriggerPulse mutation)."""
    answer = httpx.post(platform.url("graphql") + "/graphql", timeout=30, json={
        "query": old.TRIGGER_PULSE,
        "variables": {"pulseType": "BID_PULSE", "sourceNode": "V01", "targetNode": "V04"}})
    assert answer.status_code == 200 and "errors" not in answer.json(), answer.text
    return answer.json()["data"]["triggerPulse"]  # type: ignore[no-any-return]


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/system-deps)")
    return CHROMIUM


async def test_the_old_agent_console_works(platform: Topology, console_page: str, cdn: Path,
                                           chromium: str) -> None:
    from playwright.async_api import Route, async_playwright, expect

    port = urlsplit(platform.url("graphql")).port
    requested: list[str] = []
    logs: list[Any] = []

    async def page_route(route: Route) -> None:
        await route.fulfill(body=console_page, content_type="text/html; charset=utf-8")

    async def unpkg_route(route: Route) -> None:
        file = unpkg_file(cdn, route.request.url)
        if file is None:
            await route.fulfill(status=404, body=f"Cannot find {route.request.url}")
        else:
            await route.fulfill(body=file.read_bytes(), content_type="application/javascript")

    async with async_playwright() as pw:
        # Local network access checks: Chromium cannot know the address space of a page
        # Playwright answers, takes it for public, and refuses its WebSocket to a loopback
        # address (ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS); on the old server the page
        # and the socket were both local.
        browser = await pw.chromium.launch(executable_path=chromium, args=[
            *CHROMIUM_ARGS, f"--host-resolver-rules=MAP localhost:8000 127.0.0.1:{port}",
            "--disable-features=LocalNetworkAccessChecks"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda message: logs.append(message))
            await page.route(PAGE_URL, page_route)
            await page.route("https://unpkg.com/**", unpkg_route)
            await page.goto(PAGE_URL)

            # The project graph: every node of the sample project, from GraphQL (the demo
            # data it falls back to has n1..n4), laid out once the animation ends.
            await page.wait_for_function(
                "() => typeof cy !== 'undefined' && cy.nodes().length === 10 && "
                "!cy.nodes().some(n => n.animated())", timeout=TIMEOUT_MS)
            assert await page.evaluate("() => cy.nodes().map(n => n.id())") == SAMPLE_NODES
            assert await page.evaluate("() => cy.edges().length") == 12
            await expect(page.locator("#graphqlDot")).to_have_class(
                "connection-dot connected", timeout=TIMEOUT_MS)
            await expect(page.locator("#websocketDot")).to_have_class(
                "connection-dot connected", timeout=TIMEOUT_MS)

            # A user clicks V01, the structural affinity type, and Execute.
            box = await page.locator("#cytoscapeView").bounding_box()
            assert box is not None
            xy = await page.evaluate("() => cy.getElementById('V01').renderedPosition()")
            await page.mouse.click(box["x"] + xy["x"], box["y"] + xy["y"])
            await expect(page.locator("#nodeInfo .node-id")).to_have_text("Node: V01")
            await page.locator('.affinity-type[data-type="structural"]').click()
            await page.locator("#executeAffinity").click()
            result = page.locator("#resultsContainer .result-item")
            await expect(result).to_contain_text("STRUCTURAL Affinity", timeout=TIMEOUT_MS)
            await expect(result).to_contain_text("Status: completed")
            await expect(result).to_contain_text("2 formulas executed")
            await expect(result).to_contain_text("Component: V01")

            # A live pulse: the console dispatches it as a pulse_event (updatePulseIndicators).
            async with page.expect_console_message(
                    lambda m: m.text.startswith("Pulse update at"),
                    timeout=TIMEOUT_MS) as message:
                triggered = trigger_pulse(platform)
            pulse = await (await message.value).args[1].json_value()
            assert (pulse["type"], pulse["id"], pulse["source_node"]) == (
                "pulse_event", triggered["id"], "V01")
            assert pulse["pulse_type"] == "bid_pulse" and pulse["data"]["node"] in SAMPLE_NODES

            OUTPUT.mkdir(exist_ok=True)
            await page.screenshot(path=str(OUTPUT / "agent-console.png"), full_page=True)
            texts = [m.text for m in logs]
            assert any(t.startswith("✅ Loaded 10 nodes and 12 edges") for t in texts), texts
            assert not any("demo data" in t.lower() for t in texts), texts
        finally:
            await browser.close()
    hosts = {urlsplit(u).netloc for u in requested}
    assert hosts <= {"localhost:8000", "unpkg.com"}, hosts
