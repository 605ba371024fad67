"""What the first heavy request pays now that the pool starts on demand.

    .venv/bin/python benchmarks/pool_start.py [--repeat 5]

A `bem serve graph_runtime` (WORKERS=2, no Redis) is started and, once healthy, asked for
betweenness centrality of a 300-node, 1800-edge DAG (above POOL_THRESHOLD: it goes to the
pool). The first analysis starts the pool's forkserver (which imports graph_runtime's
kernels: NumPy, rustworkx) and a worker; the next ones (each with a `top_k` never asked, so
a new cache key and the same work) find the worker running. Printed: the first request's
time, the median of the next `--repeat`, and the difference, over `--repeat` fresh processes
(median).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.launch import ready, start
from benchmarks.poolcache import analysis, generated_graph, store


def one_process(graph: dict[str, object], repeat: int) -> tuple[float, float]:
    running = ready(start("graph_runtime", None, ("graph_runtime",)))
    try:
        gid = store(running, graph)
        url = running.url("graph_runtime") + "/analyze"
        times = []
        for key in range(1, repeat + 2):
            began = time.perf_counter()
            httpx.post(url, json=analysis(gid, key), timeout=120).raise_for_status()
            times.append(time.perf_counter() - began)
        return times[0], statistics.median(times[1:])
    finally:
        running.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="processes, and warm requests")
    args = parser.parse_args()
    graph = generated_graph(300, 1800)
    runs = [one_process(graph, args.repeat) for _ in range(args.repeat)]
    first = statistics.median(r[0] for r in runs)
    warm = statistics.median(r[1] for r in runs)
    print(f"first pool request {first * 1000:.0f} ms, later ones {warm * 1000:.0f} ms: "
          f"the first pays {(first - warm) * 1000:.0f} ms (median of {args.repeat} processes)")


if __name__ == "__main__":
    main()
