"""graph_runtime's cost model: which analyses run inline, and how to share one between
workers. Plain arithmetic (no NumPy): the API module imports it in every process.
"""

from __future__ import annotations

from collections.abc import Iterable

# Seconds per metric ~ fixed + per_element * (V + E) + per_pair * V * E on one core, measured
# with benchmarks/graph_scaling.py on this project's 2-core machine and rounded up. What
# runs inline runs `compiled`'s functions as plain Python, so betweenness, closeness and
# communities are costed at that speed (~150 ns a pair for Brandes on a 200-node DAG, ~25 us
# a node or edge for Louvain): the estimate decides what may run on the event loop. In the
# pool they run compiled, 20-100x faster; the grouping of `plan` needs only their order.
# Brandes and all-sources BFS cost V * E when every node reaches every other; on a DAG they
# reach only descendants and cost far less, so the estimate is an upper bound, which errs on
# the side of the pool. PageRank's fixed cost is SciPy's per-iteration overhead (~40
# iterations at tol 1e-10).
CONVERT_COST = (0.0, 3e-6, 0.0)
# An analysis estimated at more than this (as plain Python) runs `compiled`'s machine code:
# loading it costs a process ~1.2 s and ~100 MB once, which pays only for large graphs. So
# small analyses, inline or in the pool, run as plain Python, and only WORKERS=0 (everything
# inline, an operator's choice) could ever load Numba on the event loop.
COMPILE_SECONDS = 0.5
COSTS: dict[str, tuple[float, float, float]] = {
    "summary": (0.0, 2e-7, 0.0),
    "components": (0.0, 1e-6, 0.0),
    "dag": (0.0, 1e-6, 0.0),
    "topological_order": (0.0, 3e-7, 0.0),
    "levels": (0.0, 3e-7, 0.0),
    "critical_path": (0.0, 6e-7, 0.0),
    "shortest_path": (0.0, 2e-6, 0.0),
    "degree_centrality": (0.0, 3e-7, 0.0),
    "betweenness": (0.0, 1.2e-5, 3e-7),
    "closeness": (0.0, 5e-6, 1.2e-7),
    "pagerank": (2e-3, 5e-7, 0.0),
    "communities": (0.0, 3e-5, 0.0),
}


def _seconds(cost: tuple[float, float, float], nodes: int, edges: int) -> float:
    fixed, per_element, per_pair = cost
    return fixed + per_element * (nodes + edges) + per_pair * nodes * edges


def estimate(metrics: Iterable[str], nodes: int, edges: int) -> float:
    """Estimated seconds of an analysis on one core, conversion included."""
    return _seconds(CONVERT_COST, nodes, edges) + sum(
        _seconds(COSTS[m], nodes, edges) for m in metrics)


def compiled(seconds: float) -> bool:
    """Whether an analysis of `estimate` seconds should run compiled."""
    return seconds >= COMPILE_SECONDS


def plan(metrics: list[str], nodes: int, edges: int, workers: int) -> list[list[str]]:
    """Metrics grouped into at most `workers` tasks of similar estimated time (longest
    first, each to the task it finishes soonest in); a new task pays its own conversion."""
    convert = _seconds(CONVERT_COST, nodes, edges)
    groups: list[list[str]] = [[] for _ in range(max(1, workers))]
    loads = [0.0] * len(groups)
    for m in sorted(metrics, key=lambda m: (-_seconds(COSTS[m], nodes, edges), m)):
        cost = _seconds(COSTS[m], nodes, edges)
        i = min(range(len(groups)),
                key=lambda i: (loads[i] + cost + (0.0 if groups[i] else convert), i))
        loads[i] += cost + (0.0 if groups[i] else convert)
        groups[i].append(m)
    return [sorted(g) for g in groups if g]


def size_bound(data: bytes) -> tuple[int, int]:
    """Upper bounds of (nodes, edges) of a canonical graph from its length: a canonical node
    takes at least 100 bytes (every field is written), an edge at least 50."""
    return len(data) // 100 + 1, len(data) // 50 + 1
