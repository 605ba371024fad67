"""The compute pool: WORKERS processes for NumPy / NetworkX / SciPy work.

Why not `concurrent.futures.ProcessPoolExecutor`: when one of its workers dies the whole
executor is broken and every pending task fails, and a running task cannot be cancelled
without killing a worker. Here each worker is supervised on its own: a worker that dies is
replaced and only its task is affected (retried once, then a clear 503); a task over its
time limit has its worker killed and replaced (a clear 504).

Workers are forked from a forkserver that has pre-imported the services' compute modules
(with the NumPy or HiGHS each uses), so a worker starts in milliseconds and shares those
pages with its siblings (low PSS). BLAS thread counts are set before the forkserver imports
NumPy and enforced again in each worker with threadpoolctl.

Nothing of this runs until work needs it: the first task that goes to the pool launches the
forkserver (its imports: ~0.6 s for graph_runtime's, paid once by that task) and a worker;
more workers start as concurrent tasks wait, up to WORKERS; a worker idle for IDLE_SECONDS
is retired. A cluster whose work is all small (run inline) never pays the memory of a pool,
nor its start-up CPU.

Protocol, one duplex pipe per worker: parent sends pickle((task_id, fn, args)); the worker
answers pickle((task_id, ok, value, seconds)). A reader thread per worker waits on the pipe,
so a large result never blocks the event loop, and EOF on the pipe is how a death is seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from bem.errors import BemError, ServiceUnavailable, UpstreamTimeout
from bem.runtime.metrics import SHARED, Metrics

if TYPE_CHECKING:
    from bem.runtime.otel import Tracing

log = logging.getLogger("bem.pool")

# Beside the compute modules of the process's services (`preload`), which import the HiGHS
# or jsonschema their tasks use: nothing only one service needs is loaded by every pool.
# NumPy is: its BLAS must be loaded when a worker applies the threadpoolctl limit.
BASE_PRELOAD = ("bem.runtime.pool", "numpy")
STILLBORN_SECONDS = 2.0
WORKER_NICENESS = 10
IDLE_SECONDS = 120.0  # a worker idle this long is retired; the next pool task starts one
# Every BLAS / OpenMP library NumPy and SciPy may load reads one of these at its own import.
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                         "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def limit_blas_threads(threads: int) -> None:
    """NUMPY_THREADS for every BLAS library loaded from now on in this process and the
    processes it starts (the pool's forkserver): call it before NumPy is imported."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = str(threads)


class WorkerCrashed(Exception):
    """The worker running a task died before answering."""


def _worker_main(conn: Connection, numpy_threads: int) -> None:
    # The cluster process owns the signals and this worker's lifetime (it sends an empty
    # message to stop it; its death closes the pipe). Ctrl-C in a terminal or a SIGTERM to
    # the process group reaches every worker: none may die of it while the parent drains
    # in-flight work.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Below the event loop's priority: a busy pool (every worker computing) must not take
    # the CPU from the loop that serves every port; idle cores still go to the workers.
    os.nice(WORKER_NICENESS)
    from threadpoolctl import threadpool_limits

    threadpool_limits(numpy_threads)
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return  # parent went away
        if not message:
            return  # orderly stop requested by the parent
        task_id, fn, args = pickle.loads(message)
        start = time.perf_counter()
        try:
            ok, value = True, fn(*args)
        except Exception as exc:
            ok, value = False, exc
        elapsed = time.perf_counter() - start
        try:
            payload = pickle.dumps((task_id, ok, value, elapsed), protocol=5)
        except Exception as exc:
            err = BemError(f"compute result could not be sent back: {type(exc).__name__}: {exc}")
            payload = pickle.dumps((task_id, False, err, elapsed), protocol=5)
        conn.send_bytes(payload)


class _Worker:
    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.alive = True
        self.future: asyncio.Future[tuple[bool, Any, float]] | None = None
        self.task_id = -1
        self.born = time.monotonic()
        self.idle_since = self.born


class ComputePool:
    """Process pool with per-worker supervision, time limits and inline small jobs."""

    def __init__(self, workers: int, *, numpy_threads: int, task_timeout: float,
                 metrics: Metrics, preload: Sequence[str] = ()) -> None:
        self.size = workers
        self.numpy_threads = numpy_threads
        self.task_timeout = task_timeout
        self.preload = tuple(dict.fromkeys((*BASE_PRELOAD, *preload)))
        self._ctx = multiprocessing.get_context("forkserver")
        self._workers: list[_Worker] = []
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._started = False
        self._spawning = 0  # workers being started
        self._reaper: asyncio.Task[None] | None = None
        self.restarts = 0
        self._stillborn = 0  # consecutive workers that died right after starting
        c = metrics.cluster
        self._m_queue = metrics.pool_queue.labels(SHARED, c)
        self._m_workers = metrics.pool_workers.labels(SHARED, c)
        self._m_time = metrics.pool_task_time.labels(SHARED, c)
        self._m_tasks = metrics.pool_tasks
        self._m_restarts = metrics.pool_restarts
        self._m_inline = metrics.inline_tasks.labels(SHARED, c)
        self._cluster = c
        self.tracing: Tracing | None = None  # set by the runtime when tracing is on

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            raise RuntimeError("ComputePool.start() called twice")
        self._started = True
        self._loop = asyncio.get_running_loop()
        if self.size == 0:
            return
        limit_blas_threads(self.numpy_threads)  # inherited by the forkserver, before NumPy
        # Read when the first worker starts the forkserver (see the module docstring).
        self._ctx.set_forkserver_preload(list(self.preload))
        self._reaper = self._loop.create_task(self._retire_idle(), name="pool-reaper")

    async def close(self) -> None:
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        for worker in self._workers:
            worker.alive = False
            # An empty message asks the worker to exit. Closing our end would not do: the
            # reader thread blocked on it keeps the pipe open.
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(b"")
        deadline = time.monotonic() + 3.0
        for worker in self._workers:
            await asyncio.to_thread(worker.process.join, max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                await asyncio.to_thread(worker.process.join, 1.0)
            worker.conn.close()
        self._workers.clear()
        self._m_workers.set(0)

    # --- running work ------------------------------------------------------------------------
    async def submit(self, fn: Callable[..., Any], *args: Any, size: int = 0,
                     threshold: int = 0, timeout: float | None = None) -> Any:
        """Run `fn(*args)` inline when `size < threshold` (or no workers), else in the pool.

        A pool round trip costs ~0.5 ms of pickling and pipe traffic, more than small jobs take.
        """
        if self.size == 0 or size < threshold:
            self._m_inline.inc()
            return fn(*args)
        return await self.run(fn, *args, timeout=timeout)

    async def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Run in a worker. A crash is retried once on a fresh worker, then 503."""
        if self.tracing is not None:
            from bem.runtime.spans import pool_task

            return await pool_task(self.tracing, self._run, fn, args, timeout)
        return await self._run(fn, *args, timeout=timeout)

    async def _run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None
                   ) -> Any:
        if self.size == 0:
            self._m_inline.inc()
            return fn(*args)
        if self._closing:
            raise ServiceUnavailable("compute pool is shutting down")
        payload_args = (fn, args)
        for attempt in (1, 2):
            worker = await self._acquire()
            try:
                return await self._run_on(worker, payload_args, timeout or self.task_timeout)
            except WorkerCrashed:
                self._m_tasks.labels(SHARED, self._cluster, "crashed").inc()
                if attempt == 2:
                    raise ServiceUnavailable(
                        f"compute worker crashed twice while running {_name(fn)}; retry later",
                        headers={"Retry-After": "1"}) from None
                log.warning("compute worker crashed running %s; retrying once", _name(fn))
            finally:
                if worker.alive and worker.future is None:
                    self._park(worker)
        raise AssertionError("unreachable")

    async def _run_on(self, worker: _Worker, payload_args: tuple[Any, tuple[Any, ...]],
                      timeout: float) -> Any:
        assert self._loop is not None
        fn, args = payload_args
        task_id = next(self._ids)
        message = pickle.dumps((task_id, fn, args), protocol=5)  # may raise: worker stays idle
        future: asyncio.Future[tuple[bool, Any, float]] = self._loop.create_future()
        worker.future, worker.task_id = future, task_id
        try:
            worker.conn.send_bytes(message)
        except OSError:
            worker.future = None
            self._on_death(worker)
            raise WorkerCrashed from None
        try:
            ok, value, elapsed = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self._m_tasks.labels(SHARED, self._cluster, "timeout").inc()
            self._kill(worker, "timeout")
            raise UpstreamTimeout(
                f"compute task {_name(fn)} exceeded its time limit of {timeout:g} s "
                f"(TASK_TIMEOUT); its worker was replaced") from None
        except asyncio.CancelledError:
            # The caller went away; the worker finishes and returns to the idle queue by itself.
            future.add_done_callback(lambda _f: self._release_later(worker))
            raise
        self._m_time.observe(elapsed)
        self._m_tasks.labels(SHARED, self._cluster, "ok" if ok else "error").inc()
        if ok:
            return value
        raise value

    async def _acquire(self) -> _Worker:
        self._m_queue.inc()
        try:
            while True:
                if self._idle.empty():
                    self._grow()
                worker = await self._idle.get()
                if worker.alive:
                    return worker
        finally:
            self._m_queue.dec()

    def _grow(self) -> None:
        """A task waits and no worker is idle: start one more, up to WORKERS."""
        if sum(w.alive for w in self._workers) + self._spawning < self.size:
            self._start_worker(0.0)

    def _start_worker(self, delay: float) -> None:
        self._spawning += 1  # counted now: the next _grow must not start another
        assert self._loop is not None
        self._loop.create_task(self._respawn(delay)).add_done_callback(_log_failure)

    def _park(self, worker: _Worker) -> None:
        worker.idle_since = time.monotonic()
        self._idle.put_nowait(worker)

    def _release_later(self, worker: _Worker) -> None:
        if worker.alive and worker.future is None:
            self._park(worker)

    async def _retire_idle(self) -> None:
        """Stop the workers no task has needed for IDLE_SECONDS (their memory comes back)."""
        while True:
            await asyncio.sleep(IDLE_SECONDS / 4)
            now = time.monotonic()
            for worker in [w for w in self._workers if w.alive and w.future is None
                           and now - w.idle_since > IDLE_SECONDS]:
                worker.alive = False  # never handed out again: _acquire skips it
                self._workers.remove(worker)
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(b"")  # asks it to exit
                self._m_workers.set(sum(w.alive for w in self._workers))
                await asyncio.to_thread(worker.process.join, 3.0)
                if worker.process.is_alive():
                    worker.process.kill()
                worker.conn.close()

    # --- supervision -------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, args=(child_conn, self.numpy_threads),
                                    name="bem-pool-worker", daemon=True)
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def _adopt(self, worker: _Worker) -> None:
        self._workers.append(worker)
        threading.Thread(target=self._reader, args=(worker,), daemon=True,
                         name=f"bem-pool-reader-{worker.process.pid}").start()
        self._park(worker)
        self._m_workers.set(sum(w.alive for w in self._workers))

    def _reader(self, worker: _Worker) -> None:
        """Thread: deliver each answer to the loop; EOF means the worker died."""
        assert self._loop is not None
        while True:
            try:
                data = worker.conn.recv_bytes()
            except (EOFError, OSError):
                if not self._closing:
                    self._loop.call_soon_threadsafe(self._on_death, worker)
                return
            self._loop.call_soon_threadsafe(self._on_answer, worker, data)

    def _on_answer(self, worker: _Worker, data: bytes) -> None:
        task_id, ok, value, elapsed = pickle.loads(data)
        future, worker.future = worker.future, None
        if future is not None and task_id == worker.task_id and not future.done():
            future.set_result((ok, value, elapsed))
        elif future is not None and not future.done():
            future.set_exception(WorkerCrashed())

    def _kill(self, worker: _Worker, reason: str) -> None:
        if worker.alive:
            worker.alive = False
            worker.process.kill()
            self._replace(worker, reason)

    def _on_death(self, worker: _Worker) -> None:
        future, worker.future = worker.future, None
        if future is not None and not future.done():
            future.set_exception(WorkerCrashed())
        if worker.alive:
            worker.alive = False
            log.warning("compute worker pid %s died (exit code %s); replacing it",
                        worker.process.pid, worker.process.exitcode)
            self._replace(worker, "crash")

    def _replace(self, worker: _Worker, reason: str) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
        worker.conn.close()
        self.restarts += 1
        self._m_restarts.labels(SHARED, self._cluster, reason).inc()
        self._m_workers.set(sum(w.alive for w in self._workers))
        if self._closing:
            return
        # A worker that dies at birth (bad environment, unimportable module) would die again
        # at once: back off exponentially instead of spinning, and say so in health.
        if reason == "crash" and time.monotonic() - worker.born < STILLBORN_SECONDS:
            self._stillborn += 1
        else:
            self._stillborn = 0
        if self._stillborn == 5:
            log.error("compute workers keep dying at start-up; respawning every %.0fs at most",
                      10.0)
        self._start_worker(self._backoff())

    def _backoff(self) -> float:
        """Seconds to wait before the next spawn: none, or doubling per stillborn worker."""
        return min(10.0, 0.05 * 2 ** self._stillborn) if self._stillborn else 0.0

    async def _respawn(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            # Process.start() talks to the forkserver (the first one starts it and waits
            # for its imports): off the event loop.
            worker = await asyncio.to_thread(self._spawn)
        except Exception as exc:
            failed: Exception | None = exc
        else:
            failed = None
        finally:
            self._spawning -= 1
        if failed is not None:
            # The forkserver died under the request (a SIGTERM to the whole process group
            # reaches it too): multiprocessing starts another on the next attempt. Tasks may
            # be waiting for this worker, so try again, backing off like a stillborn worker.
            if not self._closing:
                self._stillborn += 1
                log.warning("could not start a compute worker (%s); trying again", failed)
                self._start_worker(self._backoff())
            return
        if self._closing:
            worker.conn.close()
            return
        self._adopt(worker)

    # --- introspection -----------------------------------------------------------------------
    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.alive and w.process.pid]

    def busy_pids(self) -> list[int]:
        return [w.process.pid for w in self._workers
                if w.alive and w.future is not None and w.process.pid]

    def health(self) -> dict[str, Any]:
        if self.size == 0:
            return {"status": "pass", "observedValue": 0, "output": "inline mode (WORKERS=0)"}
        alive = sum(w.alive for w in self._workers)
        # Fewer than WORKERS is normal: they start on demand and retire when idle.
        status = "fail" if self._stillborn >= 3 else "pass"  # fail: big jobs cannot run
        idle = sum(w.alive and w.future is None for w in self._workers)
        return {"status": status, "observedValue": alive, "observedUnit": "workers",
                "output": f"{alive}/{self.size} workers (started on demand), "
                          f"{self.restarts} restarts, {idle} idle"}


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("could not replace a compute worker: %s", task.exception())
