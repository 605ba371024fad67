"""Graph analytics: plain functions over the graph's plain form (picklable to a pool worker).

Conventions: the graph is directed; edge `weight` is a non-negative length (e.g. days).
Every mapping in a result is ordered by node id and every list is deterministic, so equal
inputs give byte-equal (cacheable) outputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import networkx as nx

from bem.errors import ValidationFailed
from bem.services.graph_runtime.dag_only import require_dag


def build(graph: dict[str, Any]) -> nx.DiGraph:
    g = nx.DiGraph()
    for node in graph["nodes"]:
        g.add_node(node["id"], phase=node.get("phase"))
    for edge in graph["edges"]:
        # Parallel edges of one direction collapse to the heaviest (the binding dependency).
        w = float(edge.get("weight", 1.0))
        if g.has_edge(edge["source"], edge["target"]):
            w = max(w, g[edge["source"]][edge["target"]]["weight"])
        g.add_edge(edge["source"], edge["target"], weight=w, kind=edge.get("kind"))
    return g


def _by_id(values: dict[str, float], digits: int = 12) -> dict[str, float]:
    return {k: round(float(values[k]), digits) for k in sorted(values)}


def _top(values: dict[str, float], top_k: int | None) -> dict[str, float]:
    """All values by id, or the `top_k` highest. Ties are judged on the rounded values, so
    two nodes equal but for the last bits of their floats still rank by id."""
    if not top_k:
        return _by_id(values)
    rounded = _by_id(values)
    best = sorted(rounded.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
    return dict(best)


def find_cycle(g: nx.DiGraph) -> list[str] | None:
    """A witness cycle as a closed node list [a, b, ..., a], or None for a DAG."""
    try:
        edges = nx.find_cycle(g, orientation="original")
    except nx.NetworkXNoCycle:
        return None
    return [edges[0][0], *(e[1] for e in edges)]


def _summary(g: nx.DiGraph, _opts: dict[str, Any]) -> dict[str, Any]:
    phases: dict[str, int] = {}
    for _, phase in g.nodes(data="phase"):
        phases[phase or "none"] = phases.get(phase or "none", 0) + 1
    return {"nodes": g.number_of_nodes(), "edges": g.number_of_edges(),
            "density": round(nx.density(g), 12), "is_dag": nx.is_directed_acyclic_graph(g),
            "self_loops": nx.number_of_selfloops(g),
            "sources": sorted(n for n, d in g.in_degree() if d == 0),
            "sinks": sorted(n for n, d in g.out_degree() if d == 0),
            "phases": dict(sorted(phases.items()))}


def _components(g: nx.DiGraph, _opts: dict[str, Any]) -> dict[str, Any]:
    def ordered(parts: Iterable[set[str]]) -> list[list[str]]:
        return sorted((sorted(p) for p in parts), key=lambda p: (-len(p), p[0]))

    weak = ordered(nx.weakly_connected_components(g))
    strong = ordered(nx.strongly_connected_components(g))
    return {"weak": weak, "strong": strong, "weak_count": len(weak),
            "strong_count": len(strong)}


def _dag(g: nx.DiGraph, _opts: dict[str, Any]) -> dict[str, Any]:
    cycle = find_cycle(g)
    return {"is_dag": cycle is None, "cycle": cycle}


def _topological_order(g: nx.DiGraph, _opts: dict[str, Any]) -> list[str]:
    return list(nx.lexicographical_topological_sort(g))


def _levels(g: nx.DiGraph, _opts: dict[str, Any]) -> list[list[str]]:
    """Topological generations: level k holds nodes whose longest chain of predecessors is k."""
    return [sorted(level) for level in nx.topological_generations(g)]


def _critical_path(g: nx.DiGraph, _opts: dict[str, Any]) -> dict[str, Any]:
    """Longest weighted path (sum of edge weights) of the DAG: the schedule's critical path."""
    path = nx.dag_longest_path(g, weight="weight", default_weight=1.0, topo_order=list(
        nx.lexicographical_topological_sort(g)))
    length = sum(g[u][v]["weight"] for u, v in itertools.pairwise(path))
    return {"path": path, "length": round(float(length), 12)}


def _shortest_path(g: nx.DiGraph, opts: dict[str, Any]) -> dict[str, Any]:
    source, target = opts.get("source"), opts.get("target")
    for name, value in (("source", source), ("target", target)):
        if value is None:
            raise ValidationFailed(f"options.{name}: required by the shortest_path metric",
                                   field=f"options.{name}")
        if value not in g:
            raise ValidationFailed(f"options.{name}: unknown node {value!r}",
                                   field=f"options.{name}")
    try:
        length, path = nx.single_source_dijkstra(g, source, target, weight="weight")
    except nx.NetworkXNoPath:
        return {"source": source, "target": target, "path": None, "length": None}
    return {"source": source, "target": target, "path": path,
            "length": round(float(length), 12)}


def _degree(g: nx.DiGraph, opts: dict[str, Any]) -> dict[str, float]:
    return _top(nx.degree_centrality(g), opts.get("top_k"))


def _betweenness(g: nx.DiGraph, opts: dict[str, Any]) -> dict[str, float]:
    return _top(nx.betweenness_centrality(g, normalized=True), opts.get("top_k"))


def _closeness(g: nx.DiGraph, opts: dict[str, Any]) -> dict[str, float]:
    return _top(nx.closeness_centrality(g), opts.get("top_k"))


def _pagerank(g: nx.DiGraph, opts: dict[str, Any]) -> dict[str, float]:
    alpha = float(opts.get("pagerank_alpha", 0.85))
    try:
        ranks = nx.pagerank(g, alpha=alpha, max_iter=200, tol=1e-10, weight="weight")
    except nx.PowerIterationFailedConvergence:
        raise ValidationFailed("pagerank did not converge in 200 iterations; try a smaller "
                               "options.pagerank_alpha", field="options.pagerank_alpha") from None
    return _top(ranks, opts.get("top_k"))


def _communities(g: nx.DiGraph, _opts: dict[str, Any]) -> list[list[str]]:
    """Louvain communities of the undirected graph, fixed seed: deterministic."""
    parts = nx.community.louvain_communities(g.to_undirected(), weight="weight", seed=42)
    return sorted((sorted(p) for p in parts), key=lambda p: (-len(p), p[0]))


METRICS: dict[str, Callable[[nx.DiGraph, dict[str, Any]], Any]] = {
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


def analyze(graph: dict[str, Any], metrics: list[str], options: dict[str, Any]
            ) -> dict[str, Any]:
    """Compute the requested metrics. A DAG-only metric on a cyclic graph is a 422."""
    g = build(graph)
    require_dag(metrics, lambda: find_cycle(g))
    return {name: METRICS[name](g, options) for name in metrics}
