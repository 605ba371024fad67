"""The replay engine of `bem compat check`, against a real cluster: it passes what the client
reads and fails, naming why, on everything else."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest

from bem.compat.catalogue import Case, Http, Read, Receive, Send, WebSocket
from bem.compat.check import run_check, service_urls
from bem.runtime.supervisor import Supervisor
from tests.support import free_port, make_settings, run_cluster, url_of

SERVICES = ("sfde", "ecm_ws")


@pytest.fixture
async def cluster() -> AsyncIterator[Supervisor]:
    async with run_cluster("single", services=SERVICES) as sup:
        yield sup


def http(reads: tuple[Read, ...], path: str = "/formulas/roi", status: int = 200) -> Case:
    return Case("test", "roi", Http("sfde", "GET", path, status=status, reads=reads))


async def replay(cases: list[Case], urls: dict[str, str]) -> tuple[list[str | None], str]:
    out = io.StringIO()
    outcomes = await run_check(cases, urls, timeout=5.0, out=out)
    return [o.failure for o in outcomes], out.getvalue()


async def test_what_the_client_reads_passes_and_the_rest_fails(cluster: Supervisor) -> None:
    urls = {s: url_of(cluster, s) for s in SERVICES}
    failures, printed = await replay([
        http((Read("name", equals="roi"), Read("parameters[*].unit", str))),
        http((Read("name", equals="npv"),)),
        http((Read("results.calculations"),)),
        http((), path="/formulas/no_such_formula"),
        http((Read("error", equals="not_found"),), path="/formulas/no_such_formula", status=404),
    ], urls)
    assert failures[0] is None and failures[4] is None
    assert failures[1] == "name: expected 'npv', got 'roi'"
    assert failures[2] is not None and "no field 'results'" in failures[2]
    assert failures[3] is not None and failures[3].startswith("HTTP 404, the old client "
                                                              "expects 200")
    assert printed.splitlines()[-1] == "2/5 compatible"
    assert printed.startswith("PASS  test: sfde GET /formulas/roi - roi")


async def test_websocket_steps(cluster: Supervisor) -> None:
    urls = {s: url_of(cluster, s) for s in SERVICES}
    hello = Receive(match=(Read("type", equals="hello"),))
    pong = Receive(reads=(Read("payload.n", equals=7),), match=(Read("type", equals="pong"),))
    conversation = WebSocket("ecm_ws", "/ws", (hello, Send({"type": "ping", "payload":
                                                                {"n": 7}}), pong))
    never = WebSocket("ecm_ws", "/ws", (hello, Receive(match=(Read("type", equals="pulse"),),
                                                        timeout=0.5)))
    failures, _ = await replay([Case("test", "ping", conversation),
                                Case("test", "nothing comes", never)], urls)
    assert failures[0] is None
    assert failures[1] is not None and failures[1].startswith("no matching message within "
                                                              "0.5 s")


async def test_unreachable_service_fails_every_case() -> None:
    urls = {"sfde": f"http://127.0.0.1:{free_port()}"}
    failures, printed = await replay([http((Read("name"),))], urls)
    assert failures[0] is not None and failures[0].startswith("cannot reach it")
    assert printed.splitlines()[-1] == "0/1 compatible"


def test_service_urls() -> None:
    settings = make_settings(sfde_port=5003, graphql_port=8000, backend_host="10.0.0.7")
    assert service_urls(settings, "http://example.test", {"sfde", "graphql"}) == {
        "sfde": "http://example.test:5003", "graphql": "http://example.test:8000"}
    assert service_urls(settings, None, {"sfde"}) == {"sfde": "http://10.0.0.7:5003"}
    with pytest.raises(ValueError, match="scheme://host only"):
        service_urls(settings, "http://example.test:8000", {"sfde"})
