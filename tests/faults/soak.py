"""Soak: the optimized topology under mixed load through the gateway, memory sampled.

    .venv/bin/python -m tests.faults.soak --duration 600     # the full soak (10 minutes)
    .venv/bin/pytest tests/faults/test_soak.py               # the reduced soak CI runs

compute, logic and gateway run as `bem serve` processes on a private redis-server. Clients
send a mixed load through the gateway for `--duration` seconds: REST calls of every
backend, GraphQL queries, pulse events, the aggregated health, and over the ECM WebSocket
two subscribers to `pulses`, an event submitter and idle connections. Inputs rotate over a
working set of WORKING_SET project variants (a real platform's traffic has one too), so
caches fill and then stay full: memory that keeps growing after that is a leak.

Every `--sample` seconds the RSS of each process (cluster, forkserver, pool workers) is
sampled. Verdict, per process: memory levels off when its RSS grew by at most
max(LEVEL_FRACTION of its RSS, LEVEL_MB) over the second half of the run (median of the
last tenth of the samples against the median of the tenth at the half). Errors are every
answer that is not a success (no 503 is expected: nothing fails during a soak). The result
(figures, verdict, the RSS series) goes to test-output/soak.json.
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

import orjson
import psutil
import websockets

from tests.faults.events import EventBook, websocket_submitter
from tests.faults.support import Load, Request, Tally, sample_variant, wide_graph
from tests.support import REPO, Topology, redis_server

WORKING_SET = 200  # distinct project variants the load cycles through
LEVEL_FRACTION = 0.05
LEVEL_MB = 12.0
IDLE_SOCKETS = 20
REPORT = REPO / "test-output" / "soak.json"
SELECT = {"components": [
    {"id": "V01", "options": [{"id": "concrete", "cost": 42000, "scores": {"material": 0.7}},
                              {"id": "steel", "cost": 61000, "scores": {"material": 0.9}}]},
    {"id": "V02", "options": [{"id": "timber", "cost": 30000, "scores": {"material": 0.6}},
                              {"id": "steel", "cost": 45000, "scores": {"material": 0.9}}]}],
    "budget": 90000, "weights": {"material": 1.0}}
QUERY = """query($g: GraphInput!, $v: JSON!) { analyze(graph: $g, metrics: [levels, summary])
  { levels summary { nodes edges } }
  evaluate_expression(expression: "w * L**2 / 8", variables: $v) { values } }"""


def mix(book: EventBook) -> list[Request]:
    def variant(n: int) -> dict[str, Any]:
        return sample_variant(n % WORKING_SET, "soak")

    return [
        Request("analyze", "POST", "/graph_runtime/analyze",
                lambda n: {"graph": variant(n), "metrics": ["summary", "pagerank"]}),
        Request("analyze_in_pool", "POST", "/graph_runtime/analyze", lambda n: {
            "graph": wide_graph(n % (4 * WORKING_SET)), "metrics": ["betweenness"]}),
        Request("store_graph", "POST", "/graph_runtime/graphs", variant),
        Request("dag_run", "POST", "/dag_alpha/run", lambda n: {"graph": variant(n)}),
        Request("sfde_columns", "POST", "/sfde/evaluate", lambda n: {
            "formula": "simple_beam_udl",
            "columns": {"w": [10.0 + (n % 50)] * 100, "L": [4.0 + i / 50 for i in range(100)]}}),
        Request("sfde_expression", "POST", "/sfde/expressions", lambda n: {
            "expression": "w * L**2 / 8 + n", "variables": {"w": 12.5, "L": [4.0, 6.0],
                                                             "n": n % WORKING_SET}}),
        Request("functor_types", "GET", "/functor_types/types"),
        Request("select", "POST", "/optimization/select", SELECT),
        book.rest_request(),
        Request("event_stats", "GET", "/callback_engine/stats"),
        Request("graphql", "POST", "/graphql",
                lambda n: {"query": QUERY, "variables": {
                    "g": variant(n), "v": {"w": 10.0, "L": [4.0, 6.0 + n % 7]}}}),
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


async def sample_memory(topo: Topology, every: float, samples: list[dict[str, Any]],
                        stop: asyncio.Event) -> None:
    start = time.monotonic()
    while True:
        procs = processes(topo)
        samples.append({"t": round(time.monotonic() - start, 1), "rss_mb": rss_mb(procs)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
            samples.append({"t": round(time.monotonic() - start, 1),
                            "rss_mb": rss_mb(processes(topo))})
            return


def levelled(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per process: RSS at start, half-time and end, second-half growth, and the verdict."""
    tenth = max(1, len(samples) // 10)
    half = len(samples) // 2
    verdict = {}
    for role in samples[-1]["rss_mb"]:
        series = [s["rss_mb"].get(role) for s in samples]
        if any(v is None for v in series):
            continue  # a process that came or went (not expected in a soak)
        at_half = round(statistics.median(series[half:half + tenth]), 1)
        at_end = round(statistics.median(series[-tenth:]), 1)
        allowed = max(LEVEL_FRACTION * at_half, LEVEL_MB)
        verdict[role] = {"start_mb": series[0], "half_mb": at_half, "end_mb": at_end,
                         "second_half_growth_mb": round(at_end - at_half, 1),
                         "allowed_mb": round(allowed, 1), "levels_off": at_end - at_half
                         <= allowed}
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


async def soak(topo: Topology, duration: float, every: float, concurrency: int
               ) -> dict[str, Any]:
    tally = Tally("soak")
    pushes: Counter[str] = Counter()
    book = EventBook("soak")
    ws_url = topo.url("ecm_ws").replace("http://", "ws://") + "/ws"
    stop = asyncio.Event()
    samples: list[dict[str, Any]] = []
    sampler = asyncio.create_task(sample_memory(topo, every, samples, stop))
    sockets = [asyncio.create_task(subscriber(ws_url, tally, pushes, stop))
               for _ in range(2)]
    sockets += [asyncio.create_task(idle(ws_url, stop)) for _ in range(IDLE_SOCKETS)]
    sockets.append(asyncio.create_task(websocket_submitter(ws_url, book, tally, stop)))
    health = Request("platform_health", "GET", "/cluster-health")
    async with Load(topo.url("graphql"), mix(book), tally, concurrency=concurrency,
                    max_requests=10**9, observe=book.observe), \
            Load(topo.url("dashboard"), [health], tally, concurrency=1, max_requests=10**9):
        await asyncio.sleep(duration)
        stop.set()
    await asyncio.gather(*sockets)
    await sampler
    summary = tally.summary()
    memory = levelled(samples)
    return {"duration_s": duration, "concurrency": concurrency,
            "requests": summary["requests_sent"], "errors": summary["failed"],
            "refused_503": summary["refused_503"], "error_examples": tally.failures,
            "requests_per_s": round(summary["requests_sent"] / duration, 1),
            "events_acknowledged": len(book.acked), "ws_pushes_received": dict(pushes),
            "rss_total_start_mb": round(sum(samples[0]["rss_mb"].values()), 1),
            "rss_total_end_mb": round(sum(samples[-1]["rss_mb"].values()), 1),
            "memory": memory, "levels_off": all(m["levels_off"] for m in memory.values()),
            "samples": samples}


@contextlib.contextmanager
def optimized() -> Iterator[Topology]:
    """The optimized topology on a private Redis; analyses of 500+ elements in the pool."""
    with redis_server() as redis, \
            Topology(["compute", "logic", "gateway"], redis_url=redis.url, workers=2,
                     inline_budget_ms=0, log_level="warning", cache_size="256MB") as topo:
        yield topo


def run(duration: float, every: float = 2.0, concurrency: int = 8) -> dict[str, Any]:
    with optimized() as topo:
        result = asyncio.run(soak(topo, duration, every, concurrency))
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=2) + "\n")
    return result


def describe(result: dict[str, Any]) -> str:
    lines = [f"soak: {result['duration_s']:.0f} s, {result['requests']} requests "
             f"({result['requests_per_s']}/s), {result['errors']} errors, "
             f"{result['events_acknowledged']} events acknowledged; RSS total "
             f"{result['rss_total_start_mb']} -> {result['rss_total_end_mb']} MB; memory "
             f"{'levels off' if result['levels_off'] else 'DOES NOT level off'}"]
    for role, m in result["memory"].items():
        lines.append(f"  {role:<22} RSS {m['start_mb']:>7} -> {m['half_mb']:>7} -> "
                     f"{m['end_mb']:>7} MB (second half {m['second_half_growth_mb']:+} MB, "
                     f"allowed {m['allowed_mb']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP clients")
    args = parser.parse_args(argv)
    result = run(args.duration, args.sample, args.concurrency)
    print(describe(result))
    print(f"written: {REPORT}")
    return 0 if result["errors"] == 0 and result["levels_off"] else 1


if __name__ == "__main__":
    sys.exit(main())
