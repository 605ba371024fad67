"""graph_runtime's analyses at scale: NetworkX against the kernels, side by side in one run.

Graphs: seeded random DAGs (edges from a lower to a higher index, as issue #16 measured) of
1,000 / 10,000 / 50,000 nodes with 4x as many edges. For each size and metric the same
prebuilt graph is analysed by `compute.py` (NetworkX, the reference) and by `kernels.py` as
the pool runs it (compiled); each measurement runs in a forked child that is killed past
--budget seconds, reported as "> N s" (NetworkX's betweenness at 50,000 nodes would take
~20 minutes). The compiled functions are loaded before the children fork, so no timing
includes loading them. Conversion is timed apart: NetworkX's `build` against
`kernels.prepare` (from the stored JSON bytes). Betweenness and closeness are also timed in
rustworkx, the library an operator would reach for (and this project used before).

Then two measurements through real processes:
- threads vs processes: one kernel betweenness (10,000 nodes) in a thread of an asyncio
  process and in a pool worker, with the loop's lag sampled meanwhile;
- the full analysis (every metric) of a 50,000-node, 200,000-edge graph through the HTTP
  API of `bem serve graph_runtime` (WORKERS=2): store, then analyse by id.

    .venv/bin/python -m benchmarks.graph_scaling [--sizes 1000,10000,50000] [--budget 20]

Writes benchmarks/results/graph-scaling-<date>.json, graph-scaling.md and graph-scaling.png.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import rustworkx as rx
from benchmarks.launch import ready, start

from bem.models.graph import Graph
from bem.runtime.cache import canonical
from bem.runtime.metrics import Metrics
from bem.runtime.pool import ComputePool
from bem.services.graph_runtime import compute, kernels

RESULTS = Path(__file__).parent / "results"
METRICS = list(compute.METRICS)


def dag(nodes: int, edges: int, seed: int = 16, weighted: bool = True) -> dict[str, Any]:
    """A random DAG; short ids and (optionally) no weights keep 50k x 200k under the 10 MB
    MAX_BODY_SIZE for the API run."""
    rng = random.Random(seed)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < edges:
        a, b = sorted(rng.sample(range(nodes), 2))
        pairs.add((a, b))
    graph: dict[str, Any] = {"nodes": [{"id": f"n{i}"} for i in range(nodes)], "edges": []}
    for a, b in sorted(pairs):
        edge: dict[str, Any] = {"source": f"n{a}", "target": f"n{b}"}
        if weighted:
            edge["weight"] = float(rng.randint(1, 9))
        graph["edges"].append(edge)
    return graph


def _child(conn: Any, fn: Any, args: tuple[Any, ...]) -> None:
    start_ = time.perf_counter()
    fn(*args)
    conn.send(time.perf_counter() - start_)


def timed(fn: Any, *args: Any, budget: float) -> float | None:
    """Seconds `fn(*args)` takes in a forked child (the parent's graph is inherited), or
    None past the budget."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    try:
        return float(parent.recv()) if parent.poll(budget) else None
    finally:
        proc.kill()
        proc.join()


def measure_size(nodes: int, budget: float) -> dict[str, Any]:
    graph = Graph.model_validate(dag(nodes, 4 * nodes)).canonical()
    data = canonical(graph)
    opts = {"source": "n0", "target": f"n{nodes - 1}", "pagerank_alpha": 0.85}
    g = compute.build(graph)
    p = kernels.prepare(orjson.loads(data))
    row: dict[str, Any] = {
        "nodes": nodes, "edges": 4 * nodes,
        "convert": {"networkx": timed(compute.build, graph, budget=budget),
                    "kernels": timed(lambda: kernels.prepare(orjson.loads(data)), budget=budget)},
        "metrics": {}}
    kernels.prepared("g", data)  # a forked child finds it converted: the second request
    row["convert"]["kernels_reused"] = timed(kernels.prepared, "g", data, budget=budget)
    for metric in METRICS:
        row["metrics"][metric] = {
            "networkx": timed(compute.METRICS[metric], g, opts, budget=budget),
            "kernels": timed(kernels.METRICS[metric], p, opts, True, budget=budget)}
        print(nodes, metric, row["metrics"][metric], flush=True)
    row["rustworkx"] = {
        "betweenness": timed(rx.digraph_betweenness_centrality, p.graph, budget=budget),
        "closeness": timed(rx.closeness_centrality, p.graph, budget=budget)}
    return row


def load_compiled() -> None:
    """Load the compiled functions (compiling them if their cache is cold) in this process,
    before any child forks."""
    graph = dag(50, 200)
    kernels.analyze(graph, METRICS, {"source": "n0", "target": "n49"}, fast=True)


async def _lagged(run: Any) -> dict[str, float]:
    """Wall time of `run()` and the worst lag of a 5 ms timer on this loop meanwhile."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    done = False

    async def sample() -> None:
        nonlocal worst
        while not done:
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            worst = max(worst, loop.time() - due)

    sampler = asyncio.create_task(sample())
    await asyncio.sleep(0.02)  # the sampler waits on its timer before the work starts
    start_ = time.perf_counter()
    await run()
    wall = time.perf_counter() - start_
    done = True
    await sampler
    return {"wall_s": round(wall, 3), "worst_loop_lag_ms": round(worst * 1000, 1)}


async def threads_vs_processes(nodes: int = 10_000) -> dict[str, Any]:
    data = canonical(Graph.model_validate(dag(nodes, 4 * nodes)).canonical())
    args = ("tvp", data, ["betweenness"], {}, True)
    pool = ComputePool(1, numpy_threads=1, task_timeout=600, metrics=Metrics("bench"),
                       preload=["bem.services.graph_runtime.kernels"])
    await pool.start()
    try:
        await pool.run(kernels.analyze_stored, *args)  # the worker converts it once
        kernels.prepared("tvp", data)  # and so does this process, for the thread
        process = await _lagged(lambda: pool.run(kernels.analyze_stored, *args))
        thread = await _lagged(lambda: asyncio.to_thread(kernels.analyze_stored, *args))
    finally:
        await pool.close()
    return {"nodes": nodes, "edges": 4 * nodes, "metric": "betweenness",
            "thread": thread, "process": process}


def api_full_analysis(nodes: int = 50_000) -> dict[str, Any]:
    graph = dag(nodes, 4 * nodes, weighted=False)
    body = orjson.dumps(graph)
    running = ready(start("single", None, ("graph_runtime",), workers=2, log_level="warning"))
    try:
        url = running.url("graph_runtime")
        with httpx.Client(timeout=600) as http:
            t0 = time.perf_counter()
            stored = http.post(url + "/graphs", content=body,
                               headers={"content-type": "application/json"})
            store_s = time.perf_counter() - t0
            stored.raise_for_status()
            gid = stored.json()["graph_id"]
            request = {"graph_id": gid, "metrics": METRICS,
                       "options": {"source": "n0", "target": f"n{nodes - 1}"}}
            first = timed_post(http, url + "/analyze", request)
            request["options"]["top_k"] = 100  # a new cache key: converted graphs reused
            again = timed_post(http, url + "/analyze", request)
    finally:
        running.stop()
    return {"nodes": nodes, "edges": 4 * nodes, "body_mb": round(len(body) / 2**20, 2),
            "store_s": round(store_s, 2), "analyze_first": first, "analyze_converted": again}


def timed_post(http: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    start_ = time.perf_counter()
    answer = http.post(url, json=body)
    return {"status": answer.status_code, "seconds": round(time.perf_counter() - start_, 2),
            "answer_mb": round(len(answer.content) / 2**20, 2),
            **({} if answer.status_code == 200 else {"error": answer.json()["message"]})}


def cell(seconds: float | None, budget: float) -> str:
    return f"> {budget:g} s" if seconds is None else f"{seconds:.3f}"


def ratio(nx_s: float | None, k_s: float | None, budget: float) -> str:
    if k_s is None:
        return "?"
    if nx_s is None:
        return f"> {budget / max(k_s, 1e-4):.0f}x"
    return f"{nx_s / max(k_s, 1e-4):.1f}x"


def table(result: dict[str, Any]) -> str:
    budget = result["budget_s"]
    rows = result["sizes"]
    head = "| metric | " + " | ".join(
        f"{r['nodes']:,} NX s | kernels s | ratio" for r in rows) + " |"
    lines = [head, "|---|" + "---:|---:|---:|" * len(rows)]
    for metric in ["convert", *METRICS]:
        cells = []
        for r in rows:
            m = r["convert"] if metric == "convert" else r["metrics"][metric]
            nx_s, k_s = m["networkx"], m["kernels"]
            cells.append(f"{cell(nx_s, budget)} | {cell(k_s, budget)} | "
                         f"{ratio(nx_s, k_s, budget)}")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def peer_table(result: dict[str, Any]) -> str:
    budget = result["budget_s"]
    lines = ["| metric | nodes | rustworkx s | kernels s | ratio |", "|---|---:|---:|---:|---:|"]
    for metric in ("betweenness", "closeness"):
        for r in result["sizes"]:
            peer, k_s = r["rustworkx"][metric], r["metrics"][metric]["kernels"]
            lines.append(f"| {metric} | {r['nodes']:,} | {cell(peer, budget)} | "
                         f"{cell(k_s, budget)} | {ratio(peer, k_s, budget)} |")
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = result["budget_s"]
    heavy = ["betweenness", "closeness", "communities", "pagerank", "dag", "critical_path"]
    fig, axes = plt.subplots(2, 3, figsize=(12, 7), sharex=True)
    sizes = [r["nodes"] for r in result["sizes"]]
    for ax, metric in zip(axes.flat, heavy, strict=True):
        for engine, style in (("networkx", "o-"), ("kernels", "s-")):
            values = [r["metrics"][metric][engine] for r in result["sizes"]]
            shown = [budget if v is None else v for v in values]
            ax.plot(sizes, shown, style, label=engine)
            if engine == "kernels" and metric in result["sizes"][0].get("rustworkx", {}):
                peer = [r["rustworkx"][metric] for r in result["sizes"]]
                ax.plot(sizes, [budget if v is None else v for v in peer], "^--",
                        label="rustworkx")
            for x, v in zip(sizes, values, strict=True):
                if v is None:
                    ax.annotate(f"> {budget:g} s", (x, budget), textcoords="offset points",
                                xytext=(-20, 6), fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(metric)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend()
    for ax in axes[1]:
        ax.set_xlabel("nodes (edges = 4 x nodes)")
    for ax in axes[:, 0]:
        ax.set_ylabel("seconds")
    fig.suptitle("graph_runtime: NetworkX vs kernels (random DAGs, one run)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000",
                        help="node counts, comma-separated (edges = 4x)")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds one measurement may take before it is cut")
    parser.add_argument("--no-api", action="store_true", help="skip the HTTP API run")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load_compiled()
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "host": platform.node(),
        "cpus": os.cpu_count(), "budget_s": args.budget, "load_average_start": os.getloadavg(),
        "sizes": [measure_size(n, args.budget) for n in sizes],
        "threads_vs_processes": asyncio.run(threads_vs_processes()),
    }
    print(result["threads_vs_processes"], flush=True)
    if not args.no_api:
        result["api_full_analysis"] = api_full_analysis(max(sizes))
        print(result["api_full_analysis"], flush=True)
    result["load_average"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"graph-scaling-{result['date']}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "graph-scaling.md").write_text(table(result) + "\n\n" + peer_table(result) + "\n")
    chart(result, RESULTS / "graph-scaling.png")
    print(table(result))
    print(peer_table(result))


if __name__ == "__main__":
    main()
