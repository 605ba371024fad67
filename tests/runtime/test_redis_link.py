"""Cancelling a task that is talking to Redis ends it, whatever redis-py does with the cancel.

redis-py often completes a command whose task was cancelled and returns normally; a loop
that awaits Redis then runs on (a compute replica once hung in shutdown on its registry
heartbeat). RedisLink re-raises the cancellation after every call.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from bem.runtime.redis_link import RedisLink
from tests.support import RedisServer

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
