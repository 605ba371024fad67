"""Access control of the gateway ports: API keys and per-client token buckets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bem.gateway import access
from bem.gateway.access import TokenBuckets, key_is_valid
from bem.runtime.supervisor import Supervisor
from tests.services.graphql.client import TransportWS
from tests.support import Topology, make_settings, redis_server, run_cluster, url_of

KEYS = "k-alpha-0123456789,k-beta-9876543210"


# --- the token bucket, on a clock of our own -------------------------------------------------
def test_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("c", now=10.0)[:2] for _ in range(3)] == [(True, 2), (True, 1),
                                                                   (True, 0)]
    allowed, remaining, wait = buckets.take("c", now=10.0)
    assert (allowed, remaining) == (False, 0) and wait == pytest.approx(0.5)
    assert buckets.take("c", now=10.25)[0] is False  # half a token
    assert buckets.take("c", now=10.5)[0] is True  # one token after 1 / rate seconds
    # Refill stops at the burst size, however long the client was away.
    assert buckets.take("c", now=1000.0)[1] == 2
    assert buckets.take("other", now=10.5)[:2] == (True, 2)  # clients do not share


def test_limit_headers_follow_the_ietf_draft() -> None:
    buckets = TokenBuckets(rate=5.0, burst=20)
    assert buckets.headers(7, 0.0) == [(b"ratelimit-policy", b'"burst";q=20;w=4'),
                                       (b"ratelimit", b'"burst";r=7;t=0')]
    assert buckets.headers(0, 0.2)[1] == (b"ratelimit", b'"burst";r=0;t=1')


def test_buckets_are_bounded_in_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "MAX_CLIENTS", 3)
    buckets = TokenBuckets(rate=1.0, burst=1)
    for client in ("a", "b", "c"):
        assert buckets.take(client, now=0.0)[0]
    buckets.take("d", now=0.0)  # evicts the least recently seen, "a"
    assert buckets.take("a", now=0.0)[0] is True  # a fresh bucket
    assert buckets.take("d", now=0.0)[0] is False


def test_key_check() -> None:
    keys = frozenset(KEYS.split(","))
    assert key_is_valid("k-beta-9876543210", keys)
    assert not key_is_valid("k-beta-9876543211", keys)
    assert not key_is_valid("k-beta", keys)
    assert not key_is_valid("", keys)
    assert not key_is_valid(None, keys)
    assert not key_is_valid("ké-non-ascii", keys)


# --- on a real gateway port ------------------------------------------------------------------
# A token every 10 s: a test's few requests cannot earn one back while it runs.
@pytest.fixture
async def limited() -> AsyncIterator[Supervisor]:
    settings = make_settings(rate_limit_rps=0.1, rate_limit_burst=3)
    async with run_cluster("graphql", settings) as sup:
        yield sup


@pytest.fixture
async def keyed() -> AsyncIterator[Supervisor]:
    settings = make_settings(rate_limit_rps=0.1, rate_limit_burst=3, BEM_API_KEYS=KEYS)
    async with run_cluster("graphql", settings) as sup:
        yield sup


@pytest.fixture
async def keyed_open() -> AsyncIterator[Supervisor]:
    """Keys required, rate limit out of the way."""
    async with run_cluster("graphql", make_settings(BEM_API_KEYS=KEYS)) as sup:
        yield sup


QUERY = {"query": "{ __typename }"}


async def test_429_with_retry_after_and_ratelimit_headers(limited: Supervisor) -> None:
    async with httpx.AsyncClient(base_url=url_of(limited, "graphql")) as http:
        answers = [await http.post("/graphql", json=QUERY) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.headers["ratelimit"] for a in answers[:2]] == [
            '"burst";r=2;t=0', '"burst";r=1;t=0']
        # t: seconds until the next token (10 s at 0.1/s, less what the requests took)
        assert answers[2].headers["ratelimit"] in ('"burst";r=0;t=10', '"burst";r=0;t=9')
        assert answers[0].headers["ratelimit-policy"] == '"burst";q=3;w=30'
        refused = await http.post("/graphql", json=QUERY)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] in ("9", "10")
        assert refused.headers["ratelimit"] == f'"burst";r=0;t={refused.headers["retry-after"]}'
        assert refused.headers["ratelimit-policy"] == '"burst";q=3;w=30'
        assert refused.json()["error"] == "rate_limited"
        assert "0.1 requests/s" in refused.json()["message"]
        # The REST routes share the client's bucket; health is never limited.
        assert (await http.get("/graph_runtime/sample")).status_code == 429
        for path in ("/health", "/health/live", "/health/ready", "/cluster-health"):
            assert (await http.get(path)).status_code == 200, path


async def test_401_without_a_valid_key(keyed_open: Supervisor) -> None:
    async with httpx.AsyncClient(base_url=url_of(keyed_open, "graphql")) as http:
        missing = await http.post("/graphql", json=QUERY)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="bem"'
        assert missing.json() == {"error": "unauthorized", "message": "missing API key: send "
                                  "X-API-Key or Authorization: Bearer"}
        wrong = await http.post("/graphql", json=QUERY, headers={"X-API-Key": "k-alpha"})
        assert wrong.status_code == 401 and "invalid API key" in wrong.json()["message"]
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/openapi.json")).status_code == 401
        for path in ("/health", "/health/live", "/health/ready", "/cluster-health"):
            assert (await http.get(path)).status_code == 200, path

        ok = [await http.post("/graphql", json=QUERY, headers=h, params=p) for h, p in [
            ({"X-API-Key": "k-alpha-0123456789"}, {}),
            ({"Authorization": "Bearer k-beta-9876543210"}, {}),
            ({}, {"api_key": "k-beta-9876543210"})]]
        assert [a.status_code for a in ok] == [200, 200, 200]


async def test_buckets_are_per_key(keyed: Supervisor) -> None:
    alpha = {"X-API-Key": "k-alpha-0123456789"}
    beta = {"X-API-Key": "k-beta-9876543210"}
    async with httpx.AsyncClient(base_url=url_of(keyed, "graphql")) as http:
        statuses = [(await http.post("/graphql", json=QUERY, headers=alpha)).status_code
                    for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert (await http.post("/graphql", json=QUERY, headers=beta)).status_code == 200


async def test_guessing_keys_is_rate_limited_too(keyed: Supervisor) -> None:
    async with httpx.AsyncClient(base_url=url_of(keyed, "graphql")) as http:
        statuses = [(await http.post("/graphql", json=QUERY,
                                     headers={"X-API-Key": f"guess-{i}"})).status_code
                    for i in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        # Health stays open to probes whatever the bucket says.
        assert (await http.get("/health/live")).status_code == 200
        # ...and only health: a path merely starting with the same letters is not exempt.
        assert (await http.get("/healthz")).status_code == 429


async def test_websocket_needs_a_key_too(keyed_open: Supervisor) -> None:
    url = f"ws://127.0.0.1:{keyed_open.ports['graphql']}/graphql"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=["graphql-transport-ws"]):  # type: ignore[list-item]
            pass
    assert refused.value.response.status_code == 401
    async with TransportWS.connect(url + "?api_key=k-alpha-0123456789") as ws:
        await ws.subscribe("1", "subscription { pulses { node } }")


# --- the gateway cluster as its own process, with Redis -------------------------------------
@pytest.mark.slow
def test_every_gateway_port_in_a_gateway_process() -> None:
    with redis_server() as redis, \
            Topology(["gateway"], redis_url=redis.url, BEM_API_KEYS=KEYS,
                     RATE_LIMIT_RPS="0.1", RATE_LIMIT_BURST="4") as topo, \
            httpx.Client(timeout=10) as http:
        key = {"X-API-Key": "k-beta-9876543210"}
        for service, path in (("graphql", "/graphql?query={__typename}"),
                              ("ecm_ws", "/metrics"), ("dashboard", "/")):
            base = topo.url(service)
            refused = http.get(base + path)
            assert refused.status_code == 401, (service, refused.text)
            assert refused.json()["error"] == "unauthorized"
            assert http.get(base + "/health/live").status_code == 200, service
            assert http.get(base + path, headers=key).status_code == 200, service
        # One bucket per key for the whole process, whichever port: 4 tokens, 3 spent above.
        assert http.get(topo.url("graphql") + "/metrics", headers=key).status_code == 200
        limited = http.get(topo.url("dashboard") + "/", headers=key)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] in ("9", "10")
        assert limited.headers["ratelimit-policy"] == '"burst";q=4;w=40'
        assert limited.headers["ratelimit"] == f'"burst";r=0;t={limited.headers["retry-after"]}'
