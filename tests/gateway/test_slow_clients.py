"""Slow and abusive clients cannot starve the gateway (a real `bem serve single` process):
1,000 connections trickling their headers (slowloris) while normal requests succeed, each
closed with a 408 once HEADER_TIMEOUT has passed; MAX_CLIENT_CONNECTIONS per address; and any
JSON value that is not an operation, as the body of POST /graphql, is a 400."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
import pytest

from tests.support import ClusterProcess, base_env, port_plan

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 8.0  # long enough that every slow connection is open during the requests
CAP = 60  # connections per address
SLOW = 1000  # slow connections, from SLOW // 50 loopback addresses (50 each, under the cap)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterProcess]:
    plan = port_plan()
    env = base_env(plan, header_timeout=HEADER_TIMEOUT, max_client_connections=CAP,
                   workers=0)
    proc = ClusterProcess("single", env, plan).start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.cleanup()


async def slow_client(port: int, address: str, opened: asyncio.Event,
                      stop: asyncio.Event) -> bytes:
    """Sends a header byte every 0.2 s until the server answers or closes; its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                   local_addr=(address, 0))
    writer.write(b"GET /health HTTP/1.1\r\nhost: gw\r\nx-slow: ")
    opened.set()
    answer = b""
    try:
        while not stop.is_set():
            writer.write(b"a")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    answer = await reader.read(4096)
                    break  # the server answered (or closed: b"")
    except ConnectionError:
        pass
    finally:
        writer.close()
    return answer


async def test_slowloris_connections_neither_starve_nor_stay(cluster: ClusterProcess) -> None:
    port = cluster.plan["graphql"]
    stop = asyncio.Event()
    events = [asyncio.Event() for _ in range(SLOW)]
    slow = [asyncio.create_task(slow_client(port, f"127.0.0.{2 + i // 50}", events[i], stop))
            for i in range(SLOW)]
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(e.wait() for e in events))
        # Every slow connection is open and trickling: normal clients are still served.
        async with httpx.AsyncClient(base_url=cluster.url("graphql"), timeout=10) as http:
            for _ in range(5):
                assert (await http.get("/health")).status_code == 200
                assert (await http.get("/sfde/formulas/roi")).status_code == 200
                answer = await http.post("/graphql", json={"query": "{ __typename }"})
                assert answer.json() == {"data": {"__typename": "Query"}}
        assert not any(task.done() for task in slow)  # all 1,000 were open meanwhile
        async with asyncio.timeout(HEADER_TIMEOUT + 20):
            results = await asyncio.gather(*slow)
    finally:
        stop.set()
        await asyncio.gather(*slow, return_exceptions=True)
    assert all(a.startswith(b"HTTP/1.1 408 ") and b"HEADER_TIMEOUT" in a for a in results)


async def test_connections_per_address_are_capped(cluster: ClusterProcess) -> None:
    port = cluster.plan["graphql"]
    held = [await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.99", 0))
            for _ in range(CAP)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=("127.0.0.99", 0))
        async with asyncio.timeout(5):
            refused = await reader.read()  # answered and closed without a request
        writer.close()
        assert refused.startswith(b"HTTP/1.1 429 ")
        assert b"MAX_CLIENT_CONNECTIONS=60" in refused
        # Another address is not affected; the held connections still serve.
        async with httpx.AsyncClient(base_url=cluster.url("graphql"), timeout=5) as http:
            assert (await http.get("/health")).status_code == 200
        reader, writer = held[0]
        writer.write(b"GET /health/live HTTP/1.1\r\nhost: gw\r\n\r\n")
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"HTTP/1.1 200 ")
    finally:
        for _, w in held:
            w.close()


@pytest.mark.parametrize("body", [b'"s"', b"123", b"1.5", b"[1]", b"null", b"true",
                                  b'[{"query": "{ __typename }"}, 7]', b"[]"])
def test_a_graphql_body_that_is_no_operation_is_a_400(cluster: ClusterProcess,
                                                      body: bytes) -> None:
    answer = httpx.post(cluster.url("graphql") + "/graphql", content=body,
                        headers={"content-type": "application/json"}, timeout=10)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["error"] == "bad_request"
    assert "expected a JSON object (one operation) or an array of objects" in error["message"]
