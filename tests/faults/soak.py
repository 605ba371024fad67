"""Soak: the optimized topology under mixed load through the gateway, memory judged.

    .venv/bin/python -m tests.faults.soak --duration 600     # the full soak (10 minutes)
    .venv/bin/pytest tests/faults/test_soak.py               # the reduced soak CI runs

compute, logic and gateway run as `bem serve` processes on a private redis-server. Clients
send a mixed load through the gateway: REST calls of every backend, GraphQL queries, pulse
events, the aggregated health, and over the ECM WebSocket two subscribers to `pulses`, an
event submitter and idle connections. Most requests rotate over a working set of
`working_set` inputs (a real platform's traffic has one); one kind sends a new pool-sized
graph every time, so the compute pool works throughout and the L1 cache keeps filling
toward CACHE_SIZE.

The run has two phases; how fast a machine is changes how long they take, not the verdict:

- **warm-up**, measured in requests: until every request kind has gone over its working
  set WARMUP_PASSES times (every cache has seen every input; connection pools, parsers and
  allocators have reached their working size). A fast machine gets there sooner.
- **measured**, `duration` seconds after that. Every `every` seconds the RSS of each process
  (cluster, forkserver, pool workers) is sampled, and the bytes each cluster's L1 cache
  holds (its `bem_cache_l1_bytes`, a structure bounded by CACHE_SIZE).

Verdict, per process, over the measured phase: its RSS growth, less the growth of its L1
cache (times L1_OVERHEAD: allocator and object overhead of what the cache counts), is
within max(SLACK_FRACTION of its RSS, SLACK_MB), or WORKER_SLACK_MB for a pool worker.
Growth that the bounded structures explain is the work done; growth beyond it is held per
request, which is a leak. With the number of measured requests, that also says how small a
leak the run could see (bytes per request). The full run also judges levelling off: the
same criterion over the second half alone. (Stored graphs and retained events live in
Redis here, bounded by the working set and CALLBACK_RETENTION; the verdict is about the
cluster processes.)
Errors are every answer that is not a success (nothing fails during a soak). The result
(figures, verdict, the samples) goes to test-output/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psutil
import websockets

from tests.faults.events import EventBook, websocket_submitter
from tests.faults.support import Load, Request, Tally, sample_variant, wide_graph
from tests.support import REPO, Topology, graph_input, metric_total, redis_server

FULL_WORKING_SET = 200
WARMUP_PASSES = 2
WARMUP_LIMIT_S = 300.0  # a warm-up longer than this is a failure of its own
SLACK_FRACTION = 0.05
SLACK_MB = 12.0
# A pool worker holds nothing between tasks, yet its allocator's high-water mark climbs in
# steps of a few MB over its first ~1,000 tasks before it settles (measured: +2 to +12 MB
# over a 60 s measured phase, flat after; a bare loop of the same tasks in one process
# settles after 100). A short run cannot tell that from a slow leak, only from a gross one.
WORKER_SLACK_MB = 24.0
L1_OVERHEAD = 1.5  # RSS per byte the L1 counts, at most (measured 1.0-1.2: docs/reliability.md)
IDLE_SOCKETS = 20
CACHE_SIZE = "256MB"
REPORT = REPO / "test-output" / "soak.json"
SELECT = {"components": [
    {"id": "V01", "options": [{"id": "concrete", "cost": 42000, "scores": {"material": 0.7}},
                              {"id": "steel", "cost": 61000, "scores": {"material": 0.9}}]},
    {"id": "V02", "options": [{"id": "timber", "cost": 30000, "scores": {"material": 0.6}},
                              {"id": "steel", "cost": 45000, "scores": {"material": 0.9}}]}],
    "budget": 90000, "weights": {"material": 1.0}}
QUERY = """query($g: GraphInput!, $v: JSON!) { analyze(graph: $g, metrics: [levels, summary])
  { levels summary { nodes edges } }
  evaluateExpression(expression: "w * L**2 / 8", variables: $v) { values } }"""


def mix(book: EventBook, working_set: int) -> list[Request]:
    def variant(n: int) -> dict[str, Any]:
        return sample_variant(n, "soak")

    ws = working_set
    return [
        Request("analyze", "POST", "/graph_runtime/analyze",
                lambda n: {"graph": variant(n), "metrics": ["summary", "pagerank"]}, cycle=ws),
        Request("analyze_in_pool", "POST", "/graph_runtime/analyze", lambda n: {
            "graph": wide_graph(n), "metrics": ["betweenness"]}, cycle=ws),
        Request("analyze_new_graph", "POST", "/graph_runtime/analyze", lambda n: {
            "graph": wide_graph(10**6 + n), "metrics": ["closeness"]}),
        Request("store_graph", "POST", "/graph_runtime/graphs", variant, cycle=ws),
        Request("dag_run", "POST", "/dag_alpha/run", lambda n: {"graph": variant(n)},
                cycle=ws),
        Request("sfde_columns", "POST", "/sfde/evaluate", lambda n: {
            "formula": "simple_beam_udl",
            "columns": {"w": [10.0 + n] * 100, "L": [4.0 + i / 50 for i in range(100)]}},
            cycle=min(ws, 50)),
        Request("sfde_expression", "POST", "/sfde/expressions", lambda n: {
            "expression": "w * L**2 / 8 + n", "variables": {"w": 12.5, "L": [4.0, 6.0],
                                                             "n": n}}, cycle=ws),
        Request("functor_types", "GET", "/functor_types/types"),
        Request("select", "POST", "/optimization/select", SELECT),
        book.rest_request(),
        Request("event_stats", "GET", "/callback_engine/stats"),
        Request("graphql", "POST", "/graphql",
                lambda n: {"query": QUERY, "variables": {
                    "g": graph_input(variant(n)), "v": {"w": 10.0, "L": [4.0, 6.0 + n % 7]}}},
                cycle=ws),
    ]


# --- memory ----------------------------------------------------------------------------
def processes(topo: Topology) -> dict[str, psutil.Process]:
    """Every process of the topology by role: the clusters, their forkservers and workers."""
    found: dict[str, psutil.Process] = {}
    for name, cluster in topo.clusters.items():
        assert cluster.process is not None
        main = psutil.Process(cluster.process.pid)
        found[name] = main
        for child in main.children():
            with contextlib.suppress(psutil.Error):
                line = " ".join(child.cmdline())
                if "forkserver" in line:
                    found[f"{name}/forkserver"] = child
                    for i, worker in enumerate(sorted(child.children(), key=lambda p: p.pid)):
                        found[f"{name}/worker-{i + 1}"] = worker
    return found


def rss_mb(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for role, proc in procs.items():
        with contextlib.suppress(psutil.Error):
            out[role] = round(proc.memory_info().rss / 2**20, 1)
    return out


async def l1_mb(topo: Topology, http: httpx.AsyncClient) -> dict[str, float]:
    """MB held by each cluster's L1 cache, from its own /metrics (any port of the process)."""
    out = {}
    for name, cluster in topo.clusters.items():
        text = (await http.get(cluster.url(cluster.services[0]) + "/metrics")).text
        out[name] = round(metric_total(text, "bem_cache_l1_bytes") / 2**20, 2)
    return out


class Sampler:
    """Samples RSS, L1 bytes and the requests sent so far, every `every` seconds."""

    def __init__(self, topo: Topology, tally: Tally, every: float) -> None:
        self.topo = topo
        self.tally = tally
        self.every = every
        self.samples: list[dict[str, Any]] = []
        self.stop = asyncio.Event()

    async def sample(self, http: httpx.AsyncClient) -> None:
        self.samples.append({"t": round(time.monotonic() - self.tally.started, 1),
                             "requests": self.tally.total(),
                             "rss_mb": rss_mb(processes(self.topo)),
                             "l1_mb": await l1_mb(self.topo, http)})

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while not self.stop.is_set():
                await self.sample(http)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.every)
            await self.sample(http)


# --- the verdict -------------------------------------------------------------------------
def judge(samples: list[dict[str, Any]], start: int = 0) -> dict[str, dict[str, Any]]:
    """Per process, from samples[start:]: growth, what the L1 explains, the verdict."""
    window = samples[start:]
    k = max(1, len(window) // 10)
    verdict = {}
    for role in window[-1]["rss_mb"]:
        rss = [s["rss_mb"].get(role) for s in window]
        if any(v is None for v in rss):
            continue  # a process that came or went (not expected in a soak)
        cluster = role.split("/")[0]
        l1 = [s["l1_mb"].get(cluster, 0.0) if "/" not in role else 0.0 for s in window]
        first, last = statistics.median(rss[:k]), statistics.median(rss[-k:])
        explained = max(0.0, statistics.median(l1[-k:]) - statistics.median(l1[:k])) * \
            L1_OVERHEAD
        slack = max(SLACK_FRACTION * first, WORKER_SLACK_MB if "/worker" in role else SLACK_MB)
        unexplained = last - first - explained
        verdict[role] = {"from_mb": round(first, 1), "to_mb": round(last, 1),
                         "growth_mb": round(last - first, 1),
                         "explained_by_l1_mb": round(explained, 1),
                         "unexplained_mb": round(unexplained, 1), "slack_mb": round(slack, 1),
                         "bounded": unexplained <= slack}
    return verdict


# --- the WebSocket part of the load ----------------------------------------------------
async def subscriber(url: str, tally: Tally, pushes: Counter[str], stop: asyncio.Event
                     ) -> None:
    """Subscribed to `pulses`, reading every push (an `error` message counts as one)."""
    async with websockets.connect(url) as ws:
        await ws.send('{"type": "subscribe", "topic": "pulses", "id": "s"}')
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 1.0))
                pushes[message["type"]] += 1
                if message["type"] == "error":
                    tally.count("ws_subscriber", "failed", str(message)[:200])


async def idle(url: str, stop: asyncio.Event) -> None:
    async with websockets.connect(url + "?heartbeat=5") as ws:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.recv(), 1.0)


async def warmed_up(tally: Tally, requests: list[Request]) -> None:
    """Until every request kind with a working set went over it WARMUP_PASSES times."""
    goals = {r.name: WARMUP_PASSES * r.distinct for r in requests if r.distinct}
    deadline = time.monotonic() + WARMUP_LIMIT_S
    while any(sum(tally.of(name, o) for o in ("ok", "refused", "failed")) < goal
              for name, goal in goals.items()):
        if time.monotonic() > deadline:
            raise AssertionError(f"warm-up not done after {WARMUP_LIMIT_S:g} s: "
                                 f"{tally.total()} requests")
        await asyncio.sleep(0.1)


async def soak(topo: Topology, duration: float, every: float, concurrency: int,
               working_set: int) -> dict[str, Any]:
    tally = Tally("soak")
    pushes: Counter[str] = Counter()
    book = EventBook("soak")
    requests = mix(book, working_set)
    ws_url = topo.url("ecm_ws").replace("http://", "ws://") + "/ws"
    stop = asyncio.Event()
    sampler = Sampler(topo, tally, every)
    sockets = [asyncio.create_task(subscriber(ws_url, tally, pushes, stop))
               for _ in range(2)]
    sockets += [asyncio.create_task(idle(ws_url, stop)) for _ in range(IDLE_SOCKETS)]
    sockets.append(asyncio.create_task(websocket_submitter(ws_url, book, tally, stop)))
    health = Request("platform_health", "GET", "/cluster-health")
    async with Load(topo.url("graphql"), requests, tally, concurrency=concurrency,
                    max_requests=10**9, observe=book.observe), \
            Load(topo.url("dashboard"), [health], tally, concurrency=1, max_requests=10**9):
        await warmed_up(tally, requests)
        warm = {"s": round(time.monotonic() - tally.started, 1), "requests": tally.total()}
        sampling = asyncio.create_task(sampler.run())
        await asyncio.sleep(duration)
        stop.set()
        sampler.stop.set()
        await sampling
    await asyncio.gather(*sockets)
    return summarise(tally, book, pushes, sampler.samples, warm, duration, concurrency,
                     working_set)


def summarise(tally: Tally, book: EventBook, pushes: Counter[str],
              samples: list[dict[str, Any]], warm: dict[str, Any], duration: float,
              concurrency: int, working_set: int) -> dict[str, Any]:
    summary = tally.summary()
    memory = judge(samples)
    second_half = judge(samples, len(samples) // 2)
    measured = samples[-1]["requests"] - samples[0]["requests"]
    slack = min(m["slack_mb"] for role, m in memory.items() if "/" not in role)
    return {"duration_s": duration, "concurrency": concurrency, "working_set": working_set,
            "warmup": warm, "requests": summary["requests_sent"],
            "measured_requests": measured, "errors": summary["failed"],
            "refused_503": summary["refused_503"], "error_examples": tally.failures,
            "requests_per_s": round(measured / duration, 1),
            "events_acknowledged": len(book.acked), "ws_pushes_received": dict(pushes),
            "rss_total_start_mb": round(sum(samples[0]["rss_mb"].values()), 1),
            "rss_total_end_mb": round(sum(samples[-1]["rss_mb"].values()), 1),
            "detectable_leak_kib_per_request": round(slack * 1024 / max(measured, 1), 1),
            "memory": memory, "bounded": all(m["bounded"] for m in memory.values()),
            "second_half": second_half,
            "levels_off": all(m["bounded"] for m in second_half.values()),
            "samples": samples}


@contextlib.contextmanager
def optimized(**env: Any) -> Iterator[Topology]:
    """The optimized topology on a private Redis, 2 pool workers per cluster."""
    with redis_server() as redis, \
            Topology(["compute", "logic", "gateway"], redis_url=redis.url, workers=2,
                     log_level="warning", cache_size=CACHE_SIZE, **env) as topo:
        yield topo


def run(duration: float, every: float = 2.0, concurrency: int = 8,
        working_set: int = FULL_WORKING_SET, **env: Any) -> dict[str, Any]:
    """One soak; `env` adds settings (or anything else) to every process's environment."""
    with optimized(**env) as topo:
        result = asyncio.run(soak(topo, duration, every, concurrency, working_set))
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=2) + "\n")
    return result


def describe(result: dict[str, Any]) -> str:
    r = result
    lines = [f"soak: warm-up {r['warmup']['requests']} requests ({r['warmup']['s']} s), then "
             f"{r['duration_s']:.0f} s: {r['measured_requests']} requests "
             f"({r['requests_per_s']}/s), {r['errors']} errors, "
             f"{r['events_acknowledged']} events acknowledged; RSS total "
             f"{r['rss_total_start_mb']} -> {r['rss_total_end_mb']} MB; memory "
             f"{'bounded' if r['bounded'] else 'NOT BOUNDED'} (a cluster process leaking "
             f"over {r['detectable_leak_kib_per_request']} KiB/request would show), second half "
             f"{'levels off' if r['levels_off'] else 'does not level off'}"]
    for role, m in r["memory"].items():
        lines.append(f"  {role:<20} RSS {m['from_mb']:>7} -> {m['to_mb']:>7} MB "
                     f"(L1 explains {m['explained_by_l1_mb']:+}, unexplained "
                     f"{m['unexplained_mb']:+} of {m['slack_mb']} allowed)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0,
                        help="seconds of load after the warm-up (default 600)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP clients")
    parser.add_argument("--working-set", type=int, default=FULL_WORKING_SET,
                        help=f"inputs each request kind rotates over (default "
                             f"{FULL_WORKING_SET})")
    args = parser.parse_args(argv)
    result = run(args.duration, args.sample, args.concurrency, args.working_set)
    print(describe(result))
    print(f"written: {REPORT}")
    return 0 if result["errors"] == 0 and result["bounded"] and result["levels_off"] else 1


if __name__ == "__main__":
    sys.exit(main())
