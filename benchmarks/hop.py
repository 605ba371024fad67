"""The cost of one service hop, and of running the compute services as one process or three.

    .venv/bin/python benchmarks/hop.py [--calls 5000] [--quick]

1. The same operation (sfde `get_formula`, whose own work is a dictionary lookup, so what is
   measured is the hop) called through the service client in-process, and over loopback HTTP
   to a `bem serve sfde` process: median and p99 per call, and the ratio. Also the client's
   own dispatch overhead (the in-process call minus calling the endpoint function directly).
2. Memory: `bem serve compute` (one process) vs `bem serve dag_alpha|sfde|graph_runtime`
   (three processes), every process of each counted (pool workers and forkserver included):
   PSS (shared pages split fairly) and RSS, after start-up.

Writes benchmarks/results/hop-<date>-<host>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support when run as a script

from tests.support import (  # noqa: E402
    ClusterProcess,
    base_env,
    make_settings,
    port_plan,
    run_cluster,
)

from bem.clusters import PLACEMENT  # noqa: E402
from bem.runtime.runtime import Runtime  # noqa: E402
from bem.services.sfde.api import get_formula  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(fn: Any, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await fn()
        samples.append((time.perf_counter_ns() - start) / 1000.0)  # microseconds
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_us": round(statistics.median(samples), 2),
            "p99_us": round(percentile(samples, 0.99), 2), "calls": len(samples)}


async def measure_hop(calls: int) -> dict[str, Any]:
    plan = port_plan()
    remote_proc = ClusterProcess("sfde", base_env(plan), plan).start().wait_ready()
    try:
        async with run_cluster("sfde") as sup:
            local = sup.runtime
            caller = Runtime(make_settings(sfde_port=plan["sfde"]), "bench", [], PLACEMENT)
            await caller.start()
            try:
                ctx = local.contexts["sfde"]

                async def direct() -> Any:
                    return await get_formula(name="simple_beam_udl", ctx=ctx)

                async def in_process() -> Any:
                    return await local.client.call(get_formula, name="simple_beam_udl")

                async def over_http() -> Any:
                    return await caller.client.call(get_formula, name="simple_beam_udl")

                for fn in (direct, in_process, over_http):  # warm-up
                    await timed(fn, 200)
                result = {"direct": summary(await timed(direct, calls)),
                          "in_process": summary(await timed(in_process, calls)),
                          "http": summary(await timed(over_http, calls))}
            finally:
                await caller.close()
    finally:
        remote_proc.cleanup()
    result["dispatch_overhead_us"] = round(
        result["in_process"]["median_us"] - result["direct"]["median_us"], 2)
    result["http_over_in_process"] = round(
        result["http"]["median_us"] / result["in_process"]["median_us"], 1)
    return result


def tree_memory(pid: int) -> dict[str, float]:
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    pss = rss = 0
    for proc in procs:
        info = proc.memory_full_info()
        pss += info.pss
        rss += info.rss
    return {"processes": len(procs), "pss_mb": round(pss / 2**20, 1),
            "rss_mb": round(rss / 2**20, 1)}


def measure_memory() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, targets in (("one_process", ["compute"]),
                           ("three_processes", ["dag_alpha", "sfde", "graph_runtime"])):
        plan = port_plan()
        procs = [ClusterProcess(t, base_env(plan, workers=2), plan).start() for t in targets]
        try:
            for proc in procs:
                proc.wait_ready()
            time.sleep(1.0)  # let start-up garbage settle
            parts = [tree_memory(p.process.pid) for p in procs]  # type: ignore[union-attr]
            out[label] = {k: round(sum(p[k] for p in parts), 1) for k in parts[0]}
        finally:
            for proc in procs:
                proc.cleanup()
    out["pss_ratio"] = round(out["one_process"]["pss_mb"] / out["three_processes"]["pss_mb"], 2)
    out["rss_ratio"] = round(out["one_process"]["rss_mb"] / out["three_processes"]["rss_mb"], 2)
    return out


def table(result: dict[str, Any]) -> str:
    hop, mem = result["hop"], result["memory"]
    rows = [
        "| measurement | value |",
        "|---|---|",
        f"| in-process call, median (p99) | {hop['in_process']['median_us']} us "
        f"({hop['in_process']['p99_us']} us) |",
        f"| loopback HTTP call, median (p99) | {hop['http']['median_us']} us "
        f"({hop['http']['p99_us']} us) |",
        f"| HTTP / in-process | {hop['http_over_in_process']}x |",
        f"| client dispatch overhead (in-process minus direct call) | "
        f"{hop['dispatch_overhead_us']} us |",
        f"| compute as 1 process: PSS / RSS ({mem['one_process']['processes']} procs) | "
        f"{mem['one_process']['pss_mb']} MB / {mem['one_process']['rss_mb']} MB |",
        f"| compute as 3 processes: PSS / RSS ({mem['three_processes']['processes']} procs) | "
        f"{mem['three_processes']['pss_mb']} MB / {mem['three_processes']['rss_mb']} MB |",
        f"| 1 process / 3 processes, PSS (RSS) | {mem['pss_ratio']} ({mem['rss_ratio']}) |",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls per variant")
    parser.add_argument("--quick", action="store_true", help="200 calls, for smoke runs")
    args = parser.parse_args()
    calls = 200 if args.quick else args.calls
    print(f"hop: {calls} calls per variant ...", flush=True)
    hop = asyncio.run(measure_hop(calls))
    print("memory: starting compute as 1 and as 3 processes ...", flush=True)
    memory = measure_memory()
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "host": socket.gethostname(), "machine": platform.machine(),
              "cpus": __import__("os").cpu_count(), "python": platform.python_version(),
              "hop": hop, "memory": memory}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"hop-{dt.date.today().isoformat()}-{socket.gethostname()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
