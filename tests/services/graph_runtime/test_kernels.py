"""The kernels answer what NetworkX answers: every metric, on seeded graphs of several shapes.

Floats agree to 1e-9; everything else (node lists, paths, the witness cycle, communities,
the order of `top_k`) is equal exactly, ties included: integer weights make many paths
equally long and many nodes equally central.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from bem.errors import ValidationFailed
from bem.models.graph import Graph
from bem.runtime.cache import canonical
from bem.services.graph_runtime import compute, cost, kernels
from bem.services.graph_runtime.dag_only import DAG_METRICS
from bem.services.graph_runtime.store import id_of_data

SHAPES = {
    "dag": {"dag": True},
    "dag-integer-weights": {"dag": True, "weights": "int"},
    "cyclic": {},
    "cyclic-integer-weights": {"weights": "int"},
    "self-loops-zero-weights": {"self_loops": True, "weights": "zero"},
    "sparse-disconnected": {"sparse": True},
    "reciprocal-pairs": {"reciprocal": True, "weights": "int"},
}


def graph_of(shape: dict[str, Any], seed: int, n: int = 120) -> dict[str, Any]:
    """A seeded random graph; nodes in shuffled order, a few isolated, parallel edges."""
    rng = random.Random(seed)
    nodes = [{"id": f"n{i}", "phase": rng.choice(["alpha", "beta", "gamma"])}
             for i in range(n)]
    rng.shuffle(nodes)
    m = n // 2 if shape.get("sparse") else 3 * n
    edges = []
    for _ in range(m):
        a, b = rng.randrange(n), rng.randrange(n)
        if a == b and not shape.get("self_loops"):
            continue
        if shape.get("dag"):
            if a == b:
                continue
            a, b = min(a, b), max(a, b)
        weight = {"int": float(rng.randint(1, 3)), "zero": rng.choice([0.0, 1.0, 2.0])}.get(
            shape.get("weights", ""), round(rng.uniform(0.5, 5.0), 2))
        edges.append({"source": f"n{a}", "target": f"n{b}", "weight": weight})
        if shape.get("reciprocal") and rng.random() < 0.3:
            edges.append({"source": f"n{b}", "target": f"n{a}", "weight": weight + 1})
    edges += edges[:5]  # parallel edges collapse to the heaviest
    nodes += [{"id": f"lone{i}"} for i in range(3)]
    return {"nodes": nodes, "edges": edges}


def assert_same(expected: Any, got: Any, where: str = "") -> None:
    if isinstance(expected, dict):
        assert list(got) == list(expected), f"{where}: keys or their order differ"
        for key in expected:
            assert_same(expected[key], got[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), f"{where}: {len(got)} items, not {len(expected)}"
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(got, float) and abs(got - expected) <= 1e-9, (where, expected, got)
    else:
        assert got == expected, (where, expected, got)


def both(graph: dict[str, Any], metrics: list[str], options: dict[str, Any],
         fast: bool = False) -> tuple[Any, Any]:
    def run(fn: Any, *more: Any) -> Any:
        try:
            return fn(graph, metrics, options, *more)
        except ValidationFailed as exc:
            return {"error": exc.message, "field": exc.field}

    return run(compute.analyze), run(kernels.analyze, fast)


@pytest.mark.parametrize("fast", [False, True], ids=["python", "compiled"])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_metric_equals_networkx(shape: str, seed: int, fast: bool) -> None:
    graph = graph_of(SHAPES[shape], seed)
    ids = [node["id"] for node in graph["nodes"]]
    pairs = [(ids[0], ids[1]), (ids[2], ids[40]), (ids[5], ids[5]), (ids[7], ids[-1])]
    for source, target in pairs:
        options = {"source": source, "target": target, "pagerank_alpha": 0.85}
        general = [m for m in compute.METRICS if m not in DAG_METRICS]
        assert_same(*both(graph, general, options, fast), where=shape)
        # DAG-only metrics: their answers on a DAG, the same 422 (same cycle) otherwise
        assert_same(*both(graph, sorted(DAG_METRICS), options, fast), where=shape)


@pytest.mark.parametrize("shape", ["cyclic", "dag-integer-weights", "reciprocal-pairs"])
def test_communities_at_a_size_where_louvain_runs_many_sweeps(shape: str) -> None:
    """1,500 nodes: hundreds of sweeps and several levels, where skipping the visits that
    cannot change anything must still give NetworkX's partition, fractional weights (whose
    totals drift in their last bits) included."""
    graph = graph_of(SHAPES[shape], 11, n=1500)
    assert_same(*both(graph, ["communities", "betweenness", "closeness"], {}, fast=True))


@pytest.mark.parametrize("shape", ["dag-integer-weights", "cyclic-integer-weights"])
def test_top_k_breaks_ties_by_id(shape: str) -> None:
    graph = graph_of(SHAPES[shape], 3)
    for k in (1, 7, 50):
        options = {"top_k": k, "pagerank_alpha": 0.85}
        expected, got = both(graph, ["betweenness", "closeness", "degree_centrality",
                                     "pagerank"], options)
        assert_same(expected, got, f"top_k={k}")
        assert len(got["degree_centrality"]) == k


@pytest.mark.parametrize("graph", [
    {"nodes": [{"id": "a"}]},
    {"nodes": [{"id": "a"}, {"id": "b"}]},
    {"nodes": [{"id": "a"}, {"id": "b"}], "edges": [{"source": "a", "target": "b"}]},
    {"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "a", "weight": 2.0}]},
    {"nodes": [{"id": "b"}, {"id": "a"}, {"id": "c"}],
     "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"},
               {"source": "c", "target": "a", "weight": 0.0}]},
], ids=["one-node", "two-nodes", "one-edge", "self-loop", "two-cycle"])
@pytest.mark.parametrize("fast", [False, True], ids=["python", "compiled"])
def test_tiny_graphs(graph: dict[str, Any], fast: bool) -> None:
    graph = {"edges": [], **graph}
    first = graph["nodes"][0]["id"]
    options = {"source": first, "target": graph["nodes"][-1]["id"], "pagerank_alpha": 0.85}
    assert_same(*both(graph, [m for m in compute.METRICS if m not in DAG_METRICS],
                      options, fast))
    assert_same(*both(graph, sorted(DAG_METRICS), options, fast))


def test_pagerank_that_cannot_converge_is_the_same_422() -> None:
    # a star with edges both ways oscillates (factor -alpha) around its stationary state
    graph = {"nodes": [{"id": x} for x in "abc"],
             "edges": [{"source": a, "target": b} for a, b in ("ab", "ba", "ac", "ca")]}
    expected, got = both(graph, ["pagerank"], {"pagerank_alpha": 0.999999})
    assert expected == got and got["field"] == "options.pagerank_alpha"


def test_a_stored_graph_is_converted_once_per_process() -> None:
    graph = graph_of(SHAPES["dag"], 5)
    data = canonical(graph)
    gid = id_of_data(data)
    first, reused = kernels.prepared(gid, data)
    again, reused_again = kernels.prepared(gid, data)
    assert (reused, reused_again) == (False, True) and again is first
    assert kernels.analyze_stored(gid, data, ["summary"], {}, False) == kernels.analyze(
        graph, ["summary"], {})


def test_the_cost_model_sends_quadratic_metrics_to_the_pool_and_spreads_them() -> None:
    budget = 0.002
    assert cost.estimate(["summary", "dag", "levels"], 10, 12) < budget
    # the example: a 400-node, 1,599-edge betweenness stalled every port inline
    assert cost.estimate(["betweenness"], 400, 1599) > 5 * budget
    for fast in (False, True):
        groups = cost.plan(sorted(compute.METRICS), 50_000, 200_000, workers=2, fast=fast)
        assert sorted(m for g in groups for m in g) == sorted(compute.METRICS)
        assert len(groups) == 2 and not {"betweenness", "closeness"} <= set(groups[0])
    # compiled, communities weigh as much as betweenness: they go to different workers
    assert not any({"betweenness", "communities"} <= set(g) for g in groups)
    assert cost.plan(["betweenness", "summary"], 50_000, 200_000, workers=1, fast=True) == [
        ["betweenness", "summary"]]
    # only large analyses load the compiled kernels; anything inline is far below them
    assert not cost.compiled(cost.estimate(sorted(compute.METRICS), 100, 400))
    assert cost.compiled(cost.estimate(["communities"], 10_000, 40_000))
    assert 100 * budget < cost.COMPILE_SECONDS
    graph = Graph.model_validate(graph_of(SHAPES["dag"], 6)).canonical()
    nodes, edges = cost.size_bound(canonical(graph))
    assert nodes >= len(graph["nodes"]) and edges >= len(graph["edges"])  # type: ignore


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_pagerank_is_networkx_bit_for_bit(shape: str, seed: int) -> None:
    """NumPy alone, in SciPy's order of additions: NetworkX's floats exactly, not to 1e-9."""
    graph = graph_of(SHAPES[shape], seed)
    options = {"pagerank_alpha": 0.85}
    expected, got = both(graph, ["pagerank"], options)
    assert got == expected
