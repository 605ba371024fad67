"""Launch a topology as real `bem serve` processes, time its start-up, measure its memory.

Every topology of one benchmark run gets the same settings (`SETTINGS`) and the same private
redis-server; only the placement differs.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support and benchmarks.* when run as a script

from tests.support import ClusterProcess, RedisServer, base_env, port_plan  # noqa: E402

from bem.clusters import TOPOLOGIES  # noqa: E402
from benchmarks import hop  # noqa: E402

# Identical for every topology. The gateway's rate limit is lifted: the benchmark is one
# client sending thousands of requests a second, and a 429 would measure the limiter.
SETTINGS: dict[str, Any] = {
    "workers": 2, "numpy_threads": 1, "cache_size": "256MB", "connection_pool_size": 20,
    "grace_period": 5, "log_level": "warning",
    "rate_limit_rps": 1_000_000, "rate_limit_burst": 1_000_000,
}
STARTUP_TIMEOUT = 180.0  # nine processes importing NumPy and HiGHS on two busy cores are slow


def exit_on_sigterm() -> None:
    """Turn SIGTERM (a `timeout`, a CI cancel) into SystemExit, so the `finally` blocks
    stop every process and the redis-server this run started instead of orphaning them."""
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


class LaunchFailed(RuntimeError):
    """A process of the topology exited or never became healthy."""


@dataclass
class Running:
    """The processes of one launched topology and where they listen."""

    name: str
    procs: list[ClusterProcess]
    plan: dict[str, int]
    started: float = 0.0  # perf_counter when the first process was started
    startup_s: float = 0.0

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.plan[service]}"

    @property
    def services(self) -> list[str]:
        return [s for p in self.procs for s in p.services]

    def memory(self) -> dict[str, float]:
        """PSS and RSS summed over every process (pool workers, forkservers included)."""
        return tree_memory([p.process.pid for p in self.procs if p.process is not None])

    def stop(self) -> None:
        # SIGTERM everyone first so the processes drain in parallel, then reap each.
        for proc in self.procs:
            if proc.process is not None and proc.process.poll() is None:
                proc.signal(signal.SIGTERM)
        for proc in self.procs:
            proc.cleanup()


def tree_memory(pids: list[int]) -> dict[str, float]:
    """PSS (shared pages split between their users) and RSS of processes and descendants."""
    parts = [hop.tree_memory(pid) for pid in pids]
    return {k: round(sum(p[k] for p in parts), 1) for k in ("processes", "pss_mb", "rss_mb")}


def start(topology: str, redis_url: str | None, targets: tuple[str, ...] | None = None,
          **overrides: Any) -> Running:
    """Start every process of `topology` (or of `targets`) on a fresh port plan."""
    plan = port_plan()
    env = base_env(plan, **{**SETTINGS, **overrides})
    if redis_url:
        env["REDIS_URL"] = redis_url
    running = Running(topology, [ClusterProcess(t, env, plan)
                                 for t in (targets or TOPOLOGIES[topology])], plan)
    running.started = time.perf_counter()
    try:
        for proc in running.procs:
            proc.start()
    except BaseException:
        running.stop()
        raise
    return running


def launch(topology: str, redis_url: str | None, targets: tuple[str, ...] | None = None,
           **overrides: Any) -> Running:
    """Start a topology and wait until each port's /health says pass (see `ready`)."""
    return ready(start(topology, redis_url, targets, **overrides))


def ready(running: Running) -> Running:
    """Wait for every port to pass; `startup_s` is the wall time from the first process
    start to the last port passing."""
    try:
        wait_healthy(running)
    except BaseException:
        running.stop()
        raise
    running.startup_s = time.perf_counter() - running.started
    return running


def wait_healthy(running: Running, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    pending = list(running.services)
    last: dict[str, str] = {}
    with httpx.Client(timeout=2.0) as http:
        while pending:
            for proc in running.procs:
                if proc.process is not None and proc.process.poll() is not None:
                    raise LaunchFailed(f"{running.name}: `bem serve {proc.target}` exited with "
                                       f"{proc.process.returncode}:\n{proc.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise LaunchFailed(f"{running.name}: not healthy after {timeout:.0f} s: "
                                   + ", ".join(f"{s} ({last.get(s, 'no answer')})"
                                               for s in pending))
            service = pending[0]
            status = _health_status(http, running.url(service))
            last[service] = status
            if status == "pass":
                pending.pop(0)
            else:
                time.sleep(0.02)


def _health_status(http: httpx.Client, base: str) -> str:
    try:
        return str(http.get(base + "/health").json().get("status"))
    except (httpx.HTTPError, ValueError):
        return "no answer"


# --- the run's Redis ---------------------------------------------------------------------
@contextlib.contextmanager
def private_redis() -> Iterator[RedisServer]:
    """One redis-server for the whole run, append-only like production.

    appendonly stays on (without it the callback engine rightly reports `warn`: its event
    log would not survive a Redis restart); fsync once a second as Redis recommends, not
    on every write as the durability tests do.
    """
    server = RedisServer(appendonly=True)
    server.start()
    try:
        with _client(server.url) as r:
            r.config_set("appendfsync", "everysec")
        yield server
    finally:
        server.cleanup()


@contextlib.contextmanager
def _client(url: str) -> Iterator[Any]:
    import redis

    r = redis.Redis.from_url(url)
    try:
        yield r
    finally:
        r.close()


def flush_all(url: str) -> None:
    """Forget everything: graphs, cache, registry, event log (between topologies)."""
    with _client(url) as r:
        r.flushall()


def flush_cache(url: str) -> int:
    """Delete the cached results only (a cold cache; stored graphs stay)."""
    with _client(url) as r:
        keys = list(r.scan_iter(match="bem:cache:*", count=1000))
        return int(r.delete(*keys)) if keys else 0
