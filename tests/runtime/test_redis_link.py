"""Cancelling a task that is talking to Redis ends it, whatever redis-py does with the cancel.

redis-py often completes a command whose task was cancelled and returns normally; a loop
that awaits Redis then runs on (a compute replica once hung in shutdown on its registry
heartbeat). RedisLink re-raises the cancellation after every call.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import redis.asyncio as aioredis

from bem.runtime.redis_link import RedisLink
from bem.runtime.supervisor import advertised_host
from tests.support import RedisServer, redis_server

TRIALS = 300


async def write(r: Any) -> None:
    async with r.pipeline(transaction=False) as pipe:
        pipe.set("bem:test:beat", b"x", px=2000)
        await pipe.execute()


async def test_a_cancelled_redis_loop_always_ends(redis: RedisServer) -> None:
    link = RedisLink(redis.url)
    await link.start()
    rng = random.Random(7)
    ran_on = []  # trials whose task kept looping after its cancel

    async def beat(required: bool) -> None:
        while not ran_on:  # as a heartbeat or a poller: only the cancel ends it
            if required:
                await link.required(lambda r: r.set("bem:test:beat", b"x", px=2000))
            else:
                await link.optional(write, None)

    try:
        for trial in range(TRIALS):
            task = asyncio.create_task(beat(required=trial % 2 == 1))
            await asyncio.sleep(rng.random() * 0.003)  # cancel anywhere in a command
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=1.0)
            if not done or not task.cancelled():
                ran_on.append(trial)  # also ends the loop, for a clean failure
                await asyncio.wait([task], timeout=5.0)
                break
        assert ran_on == [], f"a cancelled Redis loop ran on (trial {ran_on})"
        assert link.up  # a cancel is not an outage
    finally:
        await link.close()


async def _recovers(link: RedisLink, admin_url: str, **config: str) -> None:
    admin = aioredis.Redis.from_url(admin_url)
    for name, value in config.items():
        await admin.config_set(name.replace("_", "-"), value)
    await admin.aclose()
    for _ in range(100):
        if link.up:
            break
        await asyncio.sleep(0.05)
    assert link.up and link.health()["status"] == "pass"


async def test_a_redis_that_refuses_the_client_degrades_and_recovers() -> None:
    """Redis answers but refuses this client: a password REDIS_URL lacks (an
    AuthenticationError), or protected mode (a DENIED ResponseError, which used to crash
    start-up). A degraded start that says why, not a crash; once Redis accepts the client
    the link is up without a restart."""
    with redis_server(args=("--requirepass", "s3cret")) as server:
        link = RedisLink(server.url)
        await link.start()
        try:
            assert not link.up
            health = link.health()
            assert health["status"] == "warn" and "AuthenticationError" in health["output"]
            assert await link.optional(lambda r: r.get("k"), "default") == "default"
            await _recovers(link, f"redis://:s3cret@127.0.0.1:{server.port}/0",
                            requirepass="")
        finally:
            await link.close()
    address = advertised_host("auto")
    if address.startswith("127."):
        pytest.skip("no interface but loopback: protected mode cannot refuse anyone")
    with redis_server(args=("--bind", "* -::*", "--protected-mode", "yes")) as server:
        link = RedisLink(f"redis://{address}:{server.port}/0")
        await link.start()
        try:
            assert not link.up
            assert "DENIED" in link.health()["output"]
            await _recovers(link, server.url, protected_mode="no")
        finally:
            await link.close()
