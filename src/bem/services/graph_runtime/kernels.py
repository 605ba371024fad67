"""The analyses graph_runtime serves: compiled kernels with NetworkX's answers.

rustworkx (Rust) computes components, the DAG test, the lexicographic topological order and
the generations; `compiled.py` (Numba) betweenness, closeness and Louvain (NetworkX's,
replayed); NumPy runs PageRank's power iteration exactly as NetworkX's SciPy version does
(`_pagerank_scipy`); `exact.py` replays NetworkX's visiting order where an order is part of
the answer (the witness cycle, shortest and critical paths). NetworkX (`compute.py`) stays
the model these follow: a graph is an `nx.DiGraph` built from the graph's node and edge
lists in their order, parallel edges collapsed to the heaviest; every answer here equals
`compute.analyze`'s (floats to 1e-9), which the tests check on seeded graphs of several
shapes.

A graph is converted once (`prepare`) into a `Prepared`: node i is the i-th node, adjacency
lists in NetworkX's order (first appearance of each edge, also as CSR arrays) and the
rustworkx graph. `fast` says whether to use `compiled`'s machine code (a large analysis,
`cost.compiled`) or the same functions as plain Python (a small one, which may run inline on
the event loop and must not load Numba there). Stored
graphs have immutable content ids, so each pool worker keeps its recent conversions by id
(`prepared`) and a second analysis of the same graph skips the conversion.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson
import rustworkx as rx

from bem.errors import ValidationFailed
from bem.services.graph_runtime import compiled, exact
from bem.services.graph_runtime.dag_only import require_dag

# Conversions kept per process: a 50,000-node graph's takes ~60 MB (measured, see README).
PREPARED_KEEP = 4


class CSR(NamedTuple):
    """An adjacency as arrays: row i's targets are indices[indptr[i]:indptr[i + 1]]."""

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class Prepared:
    ids: list[str]
    phases: list[str | None]
    index: dict[str, int]
    succ: list[list[int]]
    succ_w: list[list[float]]
    pred: list[list[int]]
    pred_w: list[list[float]]
    out_csr: CSR  # succ as arrays, for `compiled` and PageRank
    in_csr: CSR  # pred as arrays
    graph: rx.PyDiGraph  # node payload = its index; edge payload = weight
    edges: int
    self_loops: int
    convert_seconds: float


def prepare(graph: dict[str, Any]) -> Prepared:
    """The kernel structure of a graph given as plain data (nodes and edges lists)."""
    start = time.perf_counter()
    ids = [node["id"] for node in graph["nodes"]]
    index = {k: i for i, k in enumerate(ids)}
    edges = graph["edges"]
    src = np.fromiter((index[e["source"]] for e in edges), dtype=np.int64, count=len(edges))
    dst = np.fromiter((index[e["target"]] for e in edges), dtype=np.int64, count=len(edges))
    weight = np.fromiter((float(e.get("weight", 1.0)) for e in edges), dtype=np.float64,
                         count=len(edges))
    u, v, w = _collapse(src, dst, weight, len(ids))
    out_csr, succ, succ_w = _lists(u, v, w, len(ids))
    by_target = np.argsort(v, kind="stable")  # NetworkX's predecessor order: edge order
    in_csr, pred, pred_w = _lists(v[by_target], u[by_target], w[by_target], len(ids))
    g = rx.PyDiGraph(multigraph=False, node_count_hint=len(ids), edge_count_hint=len(u))
    g.add_nodes_from(range(len(ids)))
    g.extend_from_weighted_edge_list(list(zip(u.tolist(), v.tolist(), w.tolist(),
                                              strict=True)))
    return Prepared(ids=ids, phases=[node.get("phase") for node in graph["nodes"]],
                    index=index, succ=succ, succ_w=succ_w, pred=pred, pred_w=pred_w,
                    out_csr=out_csr, in_csr=in_csr, graph=g,
                    edges=len(u), self_loops=int(np.count_nonzero(u == v)),
                    convert_seconds=time.perf_counter() - start)


def _collapse(src: np.ndarray, dst: np.ndarray, weight: np.ndarray, n: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One edge per (source, target), at its first appearance, with the heaviest weight."""
    if len(src) == 0:
        return src, dst, weight
    key = src * n + dst
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    first = order[starts]  # stable sort: the first appearance of each pair
    heaviest = np.maximum.reduceat(weight[order], starts)
    keep = np.argsort(first, kind="stable")
    return src[first][keep], dst[first][keep], heaviest[keep]


def _lists(a: np.ndarray, b: np.ndarray, w: np.ndarray, n: int
           ) -> tuple[CSR, list[list[int]], list[list[float]]]:
    """Adjacency of a -> b, each row in the order the pairs come in: as CSR arrays (for
    compiled code and PageRank) and as lists of targets and of weights (for the Python loops
    of `exact`, which index lists faster than arrays)."""
    order = np.argsort(a, kind="stable")
    csr = CSR(np.searchsorted(a[order], np.arange(n + 1)), b[order], w[order])
    bounds, targets, weights = csr.indptr.tolist(), csr.indices.tolist(), csr.weights.tolist()
    return (csr, [targets[bounds[i]:bounds[i + 1]] for i in range(n)],
            [weights[bounds[i]:bounds[i + 1]] for i in range(n)])


# --- per-process conversions of stored graphs (content ids never change) ---------------------
_PREPARED: OrderedDict[str, Prepared] = OrderedDict()


def prepared(graph_id: str, data: bytes) -> tuple[Prepared, bool]:
    """The conversion of stored graph `graph_id` (its canonical JSON `data`); (it, reused)."""
    found = _PREPARED.get(graph_id)
    if found is not None:
        _PREPARED.move_to_end(graph_id)
        return found, True
    made = prepare(orjson.loads(data))
    _PREPARED[graph_id] = made
    while len(_PREPARED) > PREPARED_KEEP:
        _PREPARED.popitem(last=False)
    return made, False


# --- metrics ---------------------------------------------------------------------------------
def _by_id(p: Prepared, values: Iterable[float], top_k: int | None) -> dict[str, float]:
    """Rounded to 12 digits, ordered by node id; `top_k`: the k highest, ties by id."""
    rounded = [round(float(x), 12) for x in values]
    if top_k:
        best = sorted(range(len(rounded)), key=lambda i: (-rounded[i], p.ids[i]))[:top_k]
        return {p.ids[i]: rounded[i] for i in best}
    return {p.ids[i]: rounded[i] for i in sorted(range(len(rounded)), key=p.ids.__getitem__)}


def _names(p: Prepared, nodes: Iterable[int]) -> list[str]:
    return sorted(p.ids[i] for i in nodes)


def _ordered_parts(p: Prepared, parts: Iterable[Iterable[int]]) -> list[list[str]]:
    return sorted((_names(p, part) for part in parts), key=lambda q: (-len(q), q[0]))


def _degree_counts(p: Prepared) -> tuple[list[int], list[int]]:
    return [len(s) for s in p.succ], [len(s) for s in p.pred]


def _summary(p: Prepared, _opts: dict[str, Any], _fast: bool) -> dict[str, Any]:
    n = len(p.ids)
    outs, ins = _degree_counts(p)
    phases: dict[str, int] = {}
    for phase in p.phases:
        phases[phase or "none"] = phases.get(phase or "none", 0) + 1
    density = 0 if p.edges == 0 or n <= 1 else p.edges / (n * (n - 1))
    return {"nodes": n, "edges": p.edges, "density": round(density, 12),
            "is_dag": rx.is_directed_acyclic_graph(p.graph), "self_loops": p.self_loops,
            "sources": _names(p, (i for i in range(n) if ins[i] == 0)),
            "sinks": _names(p, (i for i in range(n) if outs[i] == 0)),
            "phases": dict(sorted(phases.items()))}


def _components(p: Prepared, _opts: dict[str, Any], _fast: bool) -> dict[str, Any]:
    weak = _ordered_parts(p, rx.weakly_connected_components(p.graph))
    strong = _ordered_parts(p, rx.strongly_connected_components(p.graph))
    return {"weak": weak, "strong": strong, "weak_count": len(weak),
            "strong_count": len(strong)}


def _cycle(p: Prepared) -> list[str] | None:
    if rx.is_directed_acyclic_graph(p.graph):
        return None
    found = exact.find_cycle(p.succ)
    return None if found is None else [p.ids[i] for i in found]


def _dag(p: Prepared, _opts: dict[str, Any], _fast: bool) -> dict[str, Any]:
    cycle = _cycle(p)
    return {"is_dag": cycle is None, "cycle": cycle}


def _lexicographic(p: Prepared) -> list[int]:
    ids = p.ids
    return rx.lexicographical_topological_sort(p.graph, key=ids.__getitem__)  # type: ignore


def _topological_order(p: Prepared, _opts: dict[str, Any], _fast: bool) -> list[str]:
    return [p.ids[i] for i in _lexicographic(p)]


def _levels(p: Prepared, _opts: dict[str, Any], _fast: bool) -> list[list[str]]:
    return [_names(p, level) for level in rx.topological_generations(p.graph)]


def _critical_path(p: Prepared, _opts: dict[str, Any], _fast: bool) -> dict[str, Any]:
    path = exact.dag_longest_path(p.pred, p.pred_w, _lexicographic(p))
    length = 0.0  # summed along the path, as NetworkX sums it
    for a, b in itertools.pairwise(path):
        length += p.succ_w[a][p.succ[a].index(b)]
    return {"path": [p.ids[i] for i in path], "length": round(float(length), 12)}


def _shortest_path(p: Prepared, opts: dict[str, Any], _fast: bool) -> dict[str, Any]:
    source, target = opts.get("source"), opts.get("target")
    for name, value in (("source", source), ("target", target)):
        if value is None:
            raise ValidationFailed(f"options.{name}: required by the shortest_path metric",
                                   field=f"options.{name}")
        if value not in p.index:
            raise ValidationFailed(f"options.{name}: unknown node {value!r}",
                                   field=f"options.{name}")
    found = exact.dijkstra(p.succ, p.succ_w, p.index[source], p.index[target])  # type: ignore
    if found is None:
        return {"source": source, "target": target, "path": None, "length": None}
    length, path = found
    return {"source": source, "target": target, "path": [p.ids[i] for i in path],
            "length": round(float(length), 12)}


def _degree(p: Prepared, opts: dict[str, Any], _fast: bool) -> dict[str, float]:
    n = len(p.ids)
    outs, ins = _degree_counts(p)
    if n <= 1:
        return _by_id(p, [1] * n, opts.get("top_k"))
    s = 1.0 / (n - 1.0)
    return _by_id(p, ((o + i) * s for o, i in zip(outs, ins, strict=True)), opts.get("top_k"))


def _betweenness(p: Prepared, opts: dict[str, Any], fast: bool) -> dict[str, float]:
    """Normalised as NetworkX's on a directed graph: by (n - 1)(n - 2)."""
    n = len(p.ids)
    found = compiled.kernels(fast).betweenness(p.out_csr.indptr, p.out_csr.indices)
    scale = 1.0 / ((n - 1) * (n - 2)) if n > 2 else 1.0
    return _by_id(p, (x * scale for x in found.tolist()), opts.get("top_k"))


def _closeness(p: Prepared, opts: dict[str, Any], fast: bool) -> dict[str, float]:
    found = compiled.kernels(fast).closeness(p.in_csr.indptr, p.in_csr.indices)
    return _by_id(p, found.tolist(), opts.get("top_k"))


def _pagerank(p: Prepared, opts: dict[str, Any], _fast: bool) -> dict[str, float]:
    """NetworkX's `_pagerank_scipy` (uniform start and personalization, dangling nodes
    spread uniformly), max_iter 200, tol 1e-10, in NumPy alone: SciPy's sparse arrays cost a
    process ~16 MB and ~0.1 s to import for this one metric. Bit for bit SciPy's answer:
    its row sums are `np.add.reduceat` over each row's weights ordered by target (what
    `sort_indices` then `sum(axis=1)` compute), and `x @ a` adds each row's share into its
    targets row by row, as `bincount` over the entries in row order does."""
    alpha = float(opts.get("pagerank_alpha", 0.85))
    n = len(p.ids)
    succ = p.out_csr
    rows = np.repeat(np.arange(n), np.diff(succ.indptr))
    order = np.lexsort((succ.indices, rows))  # each row's entries by target
    rows, targets, weights = rows[order], succ.indices[order], succ.weights[order]
    s = np.zeros(n)
    filled = np.flatnonzero(np.diff(succ.indptr))
    if len(filled):
        s[filled] = np.add.reduceat(weights, succ.indptr[filled])
    s[s != 0] = 1.0 / s[s != 0]
    weights = s[rows] * weights  # each row normalised to 1 (dangling rows are empty)
    x = np.repeat(1.0 / n, n)
    personal = np.repeat(1.0 / n, n)
    dangling = np.where(s == 0)[0]
    for _ in range(200):
        last = x
        spread = np.bincount(targets, weights=x[rows] * weights, minlength=n)
        x = alpha * (spread + sum(x[dangling]) * personal) + (1 - alpha) * personal
        if np.absolute(x - last).sum() < n * 1e-10:
            return _by_id(p, x, opts.get("top_k"))
    raise ValidationFailed("pagerank did not converge in 200 iterations; try a smaller "
                           "options.pagerank_alpha", field="options.pagerank_alpha")


def _communities(p: Prepared, _opts: dict[str, Any], fast: bool) -> list[list[str]]:
    parts = compiled.louvain(p.out_csr, fast, seed=42)
    return _ordered_parts(p, (part.tolist() for part in parts))


METRICS: dict[str, Callable[[Prepared, dict[str, Any], bool], Any]] = {
    "summary": _summary,
    "components": _components,
    "dag": _dag,
    "topological_order": _topological_order,
    "levels": _levels,
    "critical_path": _critical_path,
    "shortest_path": _shortest_path,
    "degree_centrality": _degree,
    "betweenness": _betweenness,
    "closeness": _closeness,
    "pagerank": _pagerank,
    "communities": _communities,
}


def run(p: Prepared, metrics: list[str], options: dict[str, Any], fast: bool
        ) -> dict[str, Any]:
    """The requested metrics of a converted graph. A DAG-only metric on a cyclic graph is a
    422 naming a cycle."""
    require_dag(metrics, lambda: _cycle(p))
    return {name: METRICS[name](p, options, fast) for name in metrics}


def analyze(graph: dict[str, Any], metrics: list[str], options: dict[str, Any],
            fast: bool = False) -> dict[str, Any]:
    """`compute.analyze`'s answer, through the kernels (plain data in, plain data out)."""
    return run(prepare(graph), metrics, options, fast)


def analyze_stored(graph_id: str, data: bytes, metrics: list[str], options: dict[str, Any],
                   fast: bool) -> dict[str, Any]:
    """Analyse a stored graph given as its canonical JSON, converting it once per process."""
    return run(prepared(graph_id, data)[0], metrics, options, fast)
