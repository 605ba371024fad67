"""The compute pool with real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import psutil
import pytest

from bem.errors import ServiceUnavailable, UpstreamTimeout, ValidationFailed
from bem.runtime import pool as pool_module
from bem.runtime.metrics import Metrics
from bem.runtime.pool import ComputePool, _Worker
from tests.runtime import tasks


@pytest.fixture
async def pool() -> AsyncIterator[ComputePool]:
    p = ComputePool(2, numpy_threads=1, task_timeout=20, metrics=Metrics("test"),
                    preload=["tests.runtime.tasks"])
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def test_runs_in_other_processes(pool: ComputePool) -> None:
    assert await pool.run(tasks.square, 7) == 49
    pids = set(await asyncio.gather(*(pool.run(tasks.pid_after, 0.2) for _ in range(4))))
    assert pids <= set(pool.pids) and os.getpid() not in pids and len(pids) == 2


async def test_small_jobs_run_inline(pool: ComputePool) -> None:
    assert await pool.submit(tasks.pid_after, 0, size=10, threshold=100) == os.getpid()
    assert await pool.submit(tasks.pid_after, 0, size=100, threshold=100) != os.getpid()


async def test_numpy_threads_honoured() -> None:
    p = ComputePool(1, numpy_threads=3, task_timeout=20, metrics=Metrics("t"))
    await p.start()
    try:
        assert set(await p.run(tasks.blas_threads)) == {3}
    finally:
        await p.close()


async def test_domain_errors_keep_their_type(pool: ComputePool) -> None:
    with pytest.raises(ValidationFailed, match="x: must be positive") as info:
        await pool.run(tasks.invalid)
    assert info.value.field == "x"


async def test_sigkill_mid_task_is_retried_and_worker_replaced(pool: ComputePool) -> None:
    before = set(pool.pids)
    job = asyncio.create_task(pool.run(tasks.pid_after, 1.0))
    while not pool.busy_pids():
        await asyncio.sleep(0.01)
    victim = pool.busy_pids()[0]
    os.kill(victim, signal.SIGKILL)
    survivor_pid = await job  # retried once on another worker
    assert survivor_pid != victim
    while len(pool.pids) < 2:
        await asyncio.sleep(0.01)
    assert victim not in pool.pids and pool.restarts == 1
    assert set(pool.pids) != before
    assert [await pool.run(tasks.square, n) for n in range(5)] == [0, 1, 4, 9, 16]


async def test_a_forkserver_dying_under_a_spawn_is_survived() -> None:
    # A SIGTERM to the whole process group (Ctrl-C) reaches the forkserver too. Here it dies
    # while it is starting the replacement of a killed worker: the task that worker ran must
    # still get an answer (multiprocessing starts a new forkserver on the next attempt).
    p = ComputePool(1, numpy_threads=1, task_timeout=20, metrics=Metrics("t"),
                    preload=["tests.runtime.tasks"])
    await p.start()
    try:
        assert await p.run(tasks.square, 3) == 9
        forkserver = next(c for c in psutil.Process().children()
                          if "forkserver" in " ".join(c.cmdline()))
        forkserver.suspend()  # the next spawn waits on it for the new worker's pid
        job = asyncio.create_task(p.run(tasks.pid_after, 0.2))
        while not p.busy_pids():
            await asyncio.sleep(0.01)
        victim = p.busy_pids()[0]
        os.kill(victim, signal.SIGKILL)
        await asyncio.sleep(0.3)  # the replacement is being spawned, through the stopped server
        forkserver.kill()
        survivor = await asyncio.wait_for(job, 30)
        assert survivor not in (victim, os.getpid())
        assert await p.run(tasks.square, 4) == 16
    finally:
        await p.close()


async def test_task_that_kills_every_worker_gets_503(pool: ComputePool) -> None:
    with pytest.raises(ServiceUnavailable, match="crashed twice"):
        await pool.run(tasks.die)
    assert await pool.run(tasks.square, 3) == 9


async def test_time_limit(pool: ComputePool) -> None:
    with pytest.raises(UpstreamTimeout, match=r"time limit of 0\.3 s"):
        await pool.run(tasks.pid_after, 5, timeout=0.3)
    assert await pool.run(tasks.square, 4) == 16
    assert pool.restarts == 1


class StillbornPool(ComputePool):
    """Workers that die right after starting, as with an unimportable environment."""

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=tasks.exit_at_once, args=(child, 1), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)


async def test_workers_dying_at_birth_back_off_and_fail_health() -> None:
    p = StillbornPool(1, numpy_threads=1, task_timeout=5, metrics=Metrics("t"),
                      preload=["tests.runtime.tasks"])
    await p.start()
    work = asyncio.ensure_future(p.run(tasks.square, 2))  # workers start when work needs them
    try:
        while p.health()["status"] != "fail":
            await asyncio.sleep(0.05)
        restarts = p.restarts
        await asyncio.sleep(0.5)  # backing off: no respawn storm
        assert p.restarts - restarts <= 2
    finally:
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        await p.close()


async def test_workers_start_on_demand_and_retire_when_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "IDLE_SECONDS", 1.0)
    p = ComputePool(2, numpy_threads=1, task_timeout=20, metrics=Metrics("t"),
                    preload=["tests.runtime.tasks"])
    await p.start()
    try:
        assert p.pids == [] and p.health()["status"] == "pass"  # nothing started yet
        assert await p.run(tasks.square, 3) == 9
        assert len(p.pids) == 1  # one task, one worker
        # 1 s tasks: long enough for the second worker to start even on a loaded machine
        pids = set(await asyncio.gather(*(p.run(tasks.pid_after, 1.0) for _ in range(4))))
        assert len(pids) == 2 and len(p.pids) == 2  # concurrent tasks: up to WORKERS
        retired = set(p.pids)

        def running(pid: int) -> bool:
            with contextlib.suppress(psutil.NoSuchProcess):
                return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            return False

        # Idle past IDLE_SECONDS: out of the pool at once, and each process gone once it has
        # exited (it is asked to, then joined for up to 3 s, then killed).
        for _ in range(150):
            if not p.pids and not any(running(pid) for pid in retired):
                break
            await asyncio.sleep(0.1)
        assert p.pids == [] and p.health()["status"] == "pass"
        assert not any(running(pid) for pid in retired)
        assert await p.run(tasks.square, 4) == 16  # and the next task starts one again
    finally:
        await p.close()
