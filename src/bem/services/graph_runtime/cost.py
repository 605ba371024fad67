"""graph_runtime's cost model: which analyses run inline, which run compiled, and how to share
one between workers. Plain arithmetic (no NumPy): the API module imports it in every process.
"""

from __future__ import annotations

from collections.abc import Iterable

Cost = tuple[float, float, float]  # seconds ~ fixed + per_element * (V + E) + per_pair * V * E

# On one core, measured with benchmarks/graph_scaling.py on this project's 2-core machine
# and rounded up. What runs inline runs `compiled`'s functions as plain Python, so
# betweenness, closeness and communities are costed here at that speed (~150 ns a pair for
# Brandes on a 200-node DAG, ~25 us a node or edge for Louvain): this estimate decides what
# may run on the event loop, and what is worth compiling. Brandes and all-sources BFS cost
# V * E when every node reaches every other; on a DAG they reach only descendants and cost
# far less, so the estimate is an upper bound, which errs on the side of the pool.
# PageRank (NumPy power iteration, ~40 iterations at tol 1e-10): 0.1-0.2 ms measured up to
# 400 nodes and edges, ~200 ns a node or edge beyond (10,000 nodes, 50,000 edges: 12 ms);
# costed at twice that. At 2 ms fixed, every PageRank, even of the 10-node sample, was
# over INLINE_BUDGET_MS and started the pool (~750 ms for that first request, ~110 MB of
# forkserver and workers) for well under a millisecond of work.
CONVERT_COST: Cost = (0.0, 3e-6, 0.0)
COSTS: dict[str, Cost] = {
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
    "pagerank": (2.5e-4, 4e-7, 0.0),
    "communities": (0.0, 3e-5, 0.0),
}
# The same three compiled, as measured on the benchmark's 50,000-node random DAG (1.3 s,
# 0.45 s, 2.0 s): used only to balance `plan`'s groups, where the upper bound above would
# leave betweenness alone on one worker and everything else on the other (5.6 s against
# 3.5 s for the full analysis there). On a strongly connected graph Brandes costs ~10x this.
COMPILED: dict[str, Cost] = {
    "betweenness": (0.0, 1e-6, 1.5e-10),
    "closeness": (0.0, 1e-6, 5e-11),
    "communities": (0.0, 8e-6, 0.0),
}
# An analysis estimated at more than this (as plain Python) runs `compiled`'s machine code:
# loading it costs a process ~1.2 s and ~100 MB once, which pays only for large graphs. So
# small analyses, inline or in the pool, run as plain Python, and only WORKERS=0 (everything
# inline, an operator's choice) could ever load Numba on the event loop.
COMPILE_SECONDS = 0.5


def _seconds(cost: Cost, nodes: int, edges: int) -> float:
    fixed, per_element, per_pair = cost
    return fixed + per_element * (nodes + edges) + per_pair * nodes * edges


def _cost(metric: str, fast: bool) -> Cost:
    return COMPILED.get(metric, COSTS[metric]) if fast else COSTS[metric]


def estimate(metrics: Iterable[str], nodes: int, edges: int) -> float:
    """Estimated seconds of an analysis as plain Python on one core, conversion included."""
    return _seconds(CONVERT_COST, nodes, edges) + sum(
        _seconds(COSTS[m], nodes, edges) for m in metrics)


def compiled(seconds: float) -> bool:
    """Whether an analysis of `estimate` seconds should run compiled."""
    return seconds >= COMPILE_SECONDS


def plan(metrics: list[str], nodes: int, edges: int, workers: int, fast: bool
         ) -> list[list[str]]:
    """Metrics grouped into at most `workers` tasks of similar estimated time (longest
    first, each to the task it finishes soonest in), costed as they will run (`fast`:
    compiled); a new task pays its own conversion."""
    convert = _seconds(CONVERT_COST, nodes, edges)
    groups: list[list[str]] = [[] for _ in range(max(1, workers))]
    loads = [0.0] * len(groups)
    costs = {m: _seconds(_cost(m, fast), nodes, edges) for m in metrics}
    for m in sorted(metrics, key=lambda m: (-costs[m], m)):
        i = min(range(len(groups)),
                key=lambda i: (loads[i] + costs[m] + (0.0 if groups[i] else convert), i))
        loads[i] += costs[m] + (0.0 if groups[i] else convert)
        groups[i].append(m)
    return [sorted(g) for g in groups if g]


def size_bound(data: bytes) -> tuple[int, int]:
    """Upper bounds of (nodes, edges) of a canonical graph from its length: a canonical node
    takes at least 100 bytes (every field is written), an edge at least 50."""
    return len(data) // 100 + 1, len(data) // 50 + 1
