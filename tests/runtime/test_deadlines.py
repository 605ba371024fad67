"""The hot paths' time limits: asyncio.timeout's behaviour, one sweep for all of them."""

from __future__ import annotations

import asyncio
import time

import pytest

from bem.runtime.deadlines import RESOLUTION, Deadlines


async def test_a_passed_deadline_is_a_timeout_error() -> None:
    deadlines = Deadlines()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        async with deadlines.limit(0.1) as limit:
            await asyncio.sleep(10)
    assert limit.expired
    assert 0.1 <= time.monotonic() - start < 5  # late by up to a sweep, never early


async def test_work_within_the_limit_is_untouched() -> None:
    deadlines = Deadlines()
    async with deadlines.limit(5) as limit:
        await asyncio.sleep(0.01)
    assert not limit.expired
    await asyncio.sleep(RESOLUTION * 3)  # the sweep ran and found nothing to do
    assert deadlines._sweep is None


async def test_the_outer_limit_fires_through_an_inner_one() -> None:
    deadlines = Deadlines()
    with pytest.raises(TimeoutError):
        async with deadlines.limit(0.1) as outer, deadlines.limit(30) as inner:
            await asyncio.sleep(10)
    assert outer.expired and not inner.expired


async def test_someone_elses_cancellation_stays_a_cancellation() -> None:
    deadlines = Deadlines()

    async def wait() -> None:
        async with deadlines.limit(30):
            await asyncio.sleep(10)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_inner_timeout_is_not_the_limits() -> None:
    deadlines = Deadlines()
    with pytest.raises(TimeoutError):
        async with deadlines.limit(30) as limit:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
    assert not limit.expired  # the caller can tell whose time ran out


async def test_many_limits_expire_in_one_sweep() -> None:
    deadlines = Deadlines()

    async def wait(seconds: float) -> str:
        try:
            async with deadlines.limit(seconds):
                await asyncio.sleep(10)
        except TimeoutError:
            return "timeout"
        return "done"

    results = await asyncio.gather(*(wait(0.1) for _ in range(200)))
    assert results == ["timeout"] * 200
    assert not deadlines._open
