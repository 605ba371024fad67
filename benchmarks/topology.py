"""sprawl (9 processes) vs optimized (3) vs single (1), side by side, in one run.

    bem bench [--quick]            (or: .venv/bin/python benchmarks/topology.py [--quick])

Every topology runs the same code with the same settings (launch.SETTINGS) on one private
redis-server. Phases, each printing a progress line:

1. Start-up: launch to every port answering /health with `pass` (every launch of the run is
   timed; extra launches, alternating topologies, until each has --launches samples).
2. Memory: PSS and RSS summed over every process of the topology (pool workers and
   forkservers included), after warm-up and again after the load phases.
3. Cross-service latency, p50 / p95 / p99 at fixed concurrency: dag_alpha POST /run of the
   sample project (dag_alpha calls graph_runtime and sfde through the service client), a
   GraphQL query through the gateway with a field per backend service, and the GraphQL
   `health` query (the dashboard asks every process). Each DAG run and query is on its own
   copy of the sample (see load.sample_variant): nothing is answered from the cache.
4. Throughput: a mixed workload through the gateway (wrk), errors counted.
5. Pool and cache: a betweenness analysis with WORKERS=1 vs 2, and as a cache miss, an L1
   hit and a Redis hit (see poolcache.py).
6. The hop: an in-process service call vs the same call over loopback HTTP (hop.py).

Phases 1-4 run in rounds over the three topologies, the order reversed every other round, so
slow drift of a shared machine falls on all of them alike. Writes
benchmarks/results/<date>-<host>.json and .md, latest.md and latest.png, and prints the table
and the ratios against the operations guide's claims.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shlex
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `benchmarks.*` and tests.support when run as a script

from benchmarks.hop import measure_hop  # noqa: E402
from benchmarks.launch import (  # noqa: E402
    SETTINGS,
    exit_on_sigterm,
    flush_all,
    launch,
    private_redis,
)
from benchmarks.load import (  # noqa: E402
    Samples,
    Workload,
    latency,
    plan_workload,
    throughput,
)

from bem.clusters import TOPOLOGIES  # noqa: E402
from benchmarks import poolcache, report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ORDER = ("sprawl", "optimized", "single")
LATENCY_SERIES = ("dag_run", "graphql", "graphql_health")
MODES: dict[str, dict[str, Any]] = {
    "full": {"rounds": 2, "launches": 5, "requests": 400, "warmup": 10, "concurrency": 8,
             "wrk_seconds": 15, "wrk_concurrency": 16, "pool_graph": (600, 3000),
             "pool_concurrent": 8, "pool_rounds": 2, "cache_keys": 15, "hop_calls": 5000},
    "quick": {"rounds": 1, "launches": 1, "requests": 30, "warmup": 5, "concurrency": 4,
              "wrk_seconds": 3, "wrk_concurrency": 8, "pool_graph": (300, 1800),
              "pool_concurrent": 4, "pool_rounds": 1, "cache_keys": 3, "hop_calls": 300},
}


class Progress:
    """One line per step: seconds since the start, phase, topology, what happened."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __call__(self, phase: str, where: str, message: str) -> None:
        print(f"[{self.elapsed:6.1f}s] {phase:<10} {where:<10} {message}", flush=True)


def machine() -> dict[str, Any]:
    import psutil

    model = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as cpuinfo:  # Linux: the marketing name of the CPU
        names = [line.split(":", 1)[1].strip() for line in cpuinfo
                 if line.startswith("model name")]
    return {"host": socket.gethostname(), "cpus": os.cpu_count(),
            "cpu_model": names[0] if names else model,
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(terse=True),
            "load_avg_start": round(os.getloadavg()[0], 2)}


def rotated(round_no: int) -> tuple[str, ...]:
    return ORDER if round_no % 2 == 0 else tuple(reversed(ORDER))


# --- phases 1-4: one session per topology per round --------------------------------------
def warm_imports() -> None:
    """Import here what the clusters import, so the first timed launch finds the modules in
    the OS file cache and every .pyc compiled, like the launches after it."""
    import importlib

    import uvicorn  # noqa: F401

    from bem.clusters import ALL_SERVICES
    from bem.runtime.pool import BASE_PRELOAD
    from bem.services import spec

    for name in ALL_SERVICES:
        for module in (*spec(name).compute_modules, *BASE_PRELOAD):
            importlib.import_module(module)
    importlib.import_module("bem.services.graphql.schema")


def warm_up(running: Any, workload: Workload) -> None:
    """Every kind of request a few times (latency series: their untimed first request)."""
    import httpx

    calls = [*workload.mix, *(series[0] for series in workload.series().values())]
    with httpx.Client(timeout=60) as http:
        for _ in range(3):
            for call in calls:
                call.send(http, running)


def session(name: str, redis_url: str, workload: Workload | None, p: dict[str, Any],
            say: Progress) -> tuple[dict[str, Any], Workload]:
    flush_all(redis_url)
    running = launch(name, redis_url)
    say("start-up", name, f"{len(running.procs)} processes healthy in {running.startup_s:.2f} s")
    try:
        if workload is None:
            workload = plan_workload(running, p["requests"] + p["warmup"])
            for what, why in workload.skipped.items():
                say("workload", name, f"skipped {what}: {why[:150]}")
        else:
            workload.prepare(running)
        warm_up(running, workload)
        out: dict[str, Any] = {"startup_s": running.startup_s, "latency": {}}
        out["memory_warm"] = running.memory()
        say("memory", name, _mem_line("after warm-up", out["memory_warm"]))
        for key, calls in workload.series().items():
            samples = asyncio.run(latency(running, calls, p["concurrency"], p["warmup"]))
            out["latency"][key] = samples
            s = samples.summary(p["concurrency"])
            say("latency", name, f"{key}: p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, "
                                 f"{s['errors']} errors of {s['requests']}")
        out["throughput"] = throughput(running, workload.mix, p["wrk_seconds"],
                                       p["wrk_concurrency"])
        say("throughput", name, _tp_line(out["throughput"]))
        out["memory_loaded"] = running.memory()
        say("memory", name, _mem_line("after load", out["memory_loaded"]))
    finally:
        running.stop()
    return out, workload


def _mem_line(when: str, m: dict[str, float]) -> str:
    return f"{when}: PSS {m['pss_mb']} MB, RSS {m['rss_mb']} MB ({m['processes']} processes)"


def _tp_line(tp: dict[str, Any]) -> str:
    if "skipped" in tp:
        return f"skipped: {tp['skipped']}"
    return f"{tp['rps']} req/s, {tp['errors']} errors of {tp['requests']} ({tp['statuses']})"


def extra_launches(redis_url: str, startup: dict[str, list[float]], launches: int,
                   say: Progress) -> None:
    for i in range(max(0, launches - min(len(v) for v in startup.values()))):
        for name in rotated(i):
            if len(startup[name]) >= launches:
                continue
            flush_all(redis_url)
            running = launch(name, redis_url)
            running.stop()
            startup[name].append(running.startup_s)
            say("start-up", name, f"launch {len(startup[name])}/{launches}: "
                                  f"{running.startup_s:.2f} s")


def combine(name: str, sessions: list[dict[str, Any]], startup: list[float],
            workload: Workload, p: dict[str, Any]) -> dict[str, Any]:
    """One topology's figures over the rounds: medians, pooled latency samples."""
    def median_memory(key: str) -> dict[str, float]:
        return {k: round(statistics.median(s[key][k] for s in sessions), 1)
                for k in ("processes", "pss_mb", "rss_mb")}

    lat: dict[str, Any] = {}
    for key in LATENCY_SERIES:
        if key in sessions[0]["latency"]:
            pooled = Samples()
            for s in sessions:
                pooled.add(s["latency"][key])
            lat[key] = pooled.summary(p["concurrency"])
        else:
            lat[key] = {"skipped": workload.skipped.get(key, "not measured")}
    return {"processes": len(TOPOLOGIES[name]),
            "startup_s": {"median": round(statistics.median(startup), 3),
                          "samples": [round(s, 3) for s in startup]},
            "memory": {"warm": median_memory("memory_warm"),
                       "loaded": median_memory("memory_loaded")},
            "latency": lat, "throughput": combine_throughput([s["throughput"]
                                                               for s in sessions])}


def combine_throughput(runs: list[dict[str, Any]]) -> dict[str, Any]:
    if any("skipped" in r for r in runs):
        return runs[0]
    statuses: dict[str, int] = {}
    for r in runs:
        for code, n in r["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    return {**runs[0], "rps": round(requests / seconds, 1), "requests": requests,
            "seconds": seconds, "errors": sum(r["errors"] for r in runs), "statuses": statuses,
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "rps_per_round": [r["rps"] for r in runs]}


def topology_phases(redis_url: str, p: dict[str, Any], say: Progress
                    ) -> tuple[dict[str, Any], Workload]:
    sessions: dict[str, list[dict[str, Any]]] = {t: [] for t in ORDER}
    workload: Workload | None = None
    for r in range(p["rounds"]):
        for name in rotated(r):
            out, workload = session(name, redis_url, workload, p, say)
            sessions[name].append(out)
    assert workload is not None
    startup = {t: [s["startup_s"] for s in sessions[t]] for t in ORDER}
    extra_launches(redis_url, startup, p["launches"], say)
    return {t: combine(t, sessions[t], startup[t], workload, p) for t in ORDER}, workload


# --- phases 5 and 6 ----------------------------------------------------------------------
def pool_and_cache(redis_url: str, p: dict[str, Any], say: Progress
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    graph = poolcache.generated_graph(*p["pool_graph"])
    replicas = poolcache.Replicas(redis_url, graph)
    try:
        say("pool", "-", f"3 graph_runtime processes up; graph of {len(graph['nodes'])} "
                         f"nodes and {len(graph['edges'])} edges stored")
        runs = []
        for r in range(p["pool_rounds"]):
            for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
                run = replicas.pool_batch(workers, p["pool_concurrent"])
                runs.append(run)
                say("pool", f"WORKERS={workers}", f"{p['pool_concurrent']} analyses in "
                                                  f"{run['wall_s']} s {run['counters']}")
        cache = replicas.cache_levels(p["cache_keys"])
        say("cache", "A+B", f"miss {cache['miss_ms']} ms, L1 hit {cache['l1_hit_ms']} ms, "
                            f"Redis hit {cache['redis_hit_ms']} ms; confirmed by the "
                            f"counters: {cache['levels_confirmed']}")
    finally:
        replicas.close()
    return poolcache.pool_speedup(runs, p["pool_concurrent"], graph), cache


def hop_phase(p: dict[str, Any], say: Progress) -> dict[str, Any]:
    out = asyncio.run(measure_hop(p["hop_calls"]))
    say("hop", "-", f"in-process {out['in_process']['median_us']} us, HTTP "
                    f"{out['http']['median_us']} us: {out['http_over_in_process']}x")
    return out


# --- the run -----------------------------------------------------------------------------
def run(mode: str, command: str, say: Progress) -> dict[str, Any]:
    p = MODES[mode]
    result: dict[str, Any] = {
        "tool": "benchmarks/topology.py", "mode": mode, "command": command,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
        "settings": {k: v for k, v in SETTINGS.items()},
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in p.items()}}
    say("machine", "-", json.dumps(result["machine"]))
    warm_imports()
    say("warm-up", "-", "imported every module the clusters import (file cache, .pyc)")
    with private_redis() as redis:
        result["topologies"], workload = topology_phases(redis.url, p, say)
        result["skipped"] = workload.skipped
        result["pool"], result["cache"] = pool_and_cache(redis.url, p, say)
    result["hop"] = hop_phase(p, say)
    result["ratios"] = report.ratios(result)
    result["claims"] = report.claims(result["ratios"])
    result["duration_s"] = round(say.elapsed, 1)
    return result


def write(result: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{dt.date.today().isoformat()}-{result['machine']['host']}"
    table = report.markdown(result)
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md", out_dir / "latest.md",
             out_dir / "latest.png"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(table)
    paths[2].write_text(table)
    report.chart(result, paths[3])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bem bench", description=__doc__.split("\n\n")[0],
        epilog="Full run: about 5 minutes on 2 cores; use a quiet machine.")
    parser.add_argument("--quick", action="store_true",
                        help="one round, one launch each, short loads: under two minutes, for "
                             "smoke runs (figures are noisy)")
    parser.add_argument("--results", type=Path, default=RESULTS, metavar="DIR",
                        help=f"where to write the results (default: {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    say = Progress()
    exit_on_sigterm()
    command = "bem bench" + (" --quick" if args.quick else "")
    result = run("quick" if args.quick else "full", command, say)
    paths = write(result, args.results)
    print()
    print(report.markdown(result))
    for path in paths:
        print(f"written: {shlex.quote(str(path))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
