"""Pulse routing and callbacks against hand-computed values and a NetworkX oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bem.errors import NotFound, ValidationFailed
from bem.services.callback_engine import compute
from bem.services.callback_engine.compute import PULSE_RULES, index_graph, process_event, route


@pytest.fixture
def g(sample: dict[str, Any]) -> compute.GraphIndex:
    return index_graph(sample, "sample")


def hops_of(g: compute.GraphIndex, origin: str, kind: str) -> list[tuple[str, int, float]]:
    hops, truncated = route(g, origin, PULSE_RULES[kind], 1.0)
    assert not truncated
    return [(h.node, h.hop, round(h.value, 6)) for h in hops]


def test_bid_flows_downstream_breadth_first(g: compute.GraphIndex) -> None:
    # bid: urgency 0.8, decay 0.85 -> 0.8, 0.68, 0.578, 0.4913
    assert hops_of(g, "V01", "bid") == [
        ("V01", 0, 0.8), ("V02", 1, 0.68), ("V04", 1, 0.68), ("V05", 2, 0.578),
        ("V07", 2, 0.578), ("V08", 2, 0.578), ("V09", 3, 0.4913)]


def test_reject_flows_upstream_negative(g: compute.GraphIndex) -> None:
    assert hops_of(g, "V09", "reject") == [
        ("V09", 0, -1.0), ("V05", 1, -0.9), ("V06", 1, -0.9), ("V02", 2, -0.81),
        ("V03", 2, -0.81), ("V01", 3, -0.729)]


def test_decay_fades_below_the_threshold(g: compute.GraphIndex) -> None:
    # decay: -0.3 * 0.5**h; hop 3 would be -0.0375 < MIN_VALUE, so V09 is never reached
    assert hops_of(g, "V01", "decay") == [
        ("V01", 0, -0.3), ("V02", 1, -0.15), ("V04", 1, -0.15), ("V05", 2, -0.075),
        ("V07", 2, -0.075), ("V08", 2, -0.075)]


def test_both_directions_reach_siblings(g: compute.GraphIndex) -> None:
    nodes = [n for n, _, _ in hops_of(g, "V07", "occupancy")]
    # occupancy: 0.5 * 0.7**h stays >= 0.05 for six hops: the whole connected graph
    assert nodes[:3] == ["V07", "V04", "V01"] and sorted(nodes) == sorted(g.phase)


def test_beta_callback_compliance_across_edges(g: compute.GraphIndex) -> None:
    result, pulses = process_event(g, "1-0", {"type": "reject", "node": "V09"})
    by_node = {c["node"]: c for c in result["callbacks"]}
    assert set(by_node) == {"V05", "V06"}  # target phase beta; the others relay
    v05 = by_node["V05"]
    # suppliers V02 (0.74) and V03 (0.91) clear strictness 0.55: support 1, score 1;
    # adjusted = 1 + (-0.9)(0.6)(1 - 0.55) = 0.757 >= 0.55
    assert (v05["support"], v05["score"], v05["adjusted"], v05["compliant"]) == \
        (1.0, 1.0, 0.757, True)
    v06 = by_node["V06"]  # compliance_pass false: score 0 whatever the suppliers
    assert (v06["own_pass"], v06["score"], v06["adjusted"], v06["compliant"]) == \
        (False, 0.0, 0.0, False)
    assert [p["node"] for p in pulses] == ["V09", "V05", "V06", "V02", "V03", "V01"]
    assert result["reached"] == result["pulses"] == 6


def test_beta_failing_supplier_edges() -> None:
    graph = {"nodes": [
        {"id": "a", "phase": "alpha", "attrs": {"buildability_score": 0.4}},
        {"id": "b", "phase": "alpha", "attrs": {"buildability_score": 0.9}},
        {"id": "c", "phase": "beta", "attrs": {"compliance_pass": False}},
        {"id": "n", "phase": "beta", "attrs": {"regulatory_strictness": 0.6,
                                               "user_priority_score": 1.0,
                                               "compliance_pass": True}}],
        "edges": [{"source": s, "target": "n"} for s in "abc"]}
    g = index_graph(graph, "t")
    out = compute.relational(g, "n", 0.5)
    # a (0.4 < 0.6) and c (verdict false) fail, b passes: support 1/3;
    # adjusted = 1/3 + 0.5 * 1.0 * 0.4 = 0.5333 < 0.6
    assert out["failing_edges"] == [["a", "n"], ["c", "n"]]
    assert out["support"] == pytest.approx(1 / 3, abs=1e-6)
    assert out["adjusted"] == pytest.approx(1 / 3 + 0.2, abs=1e-6)
    assert out["compliant"] is False
    assert compute.relational(g, "n", 1.0)["compliant"] is True  # 1/3 + 0.4 >= 0.6


def test_gamma_callback_aggregates_peers(g: compute.GraphIndex) -> None:
    # V08's suppliers are V04 (feeds V07, V08) and V05 (feeds V08, V09)
    assert compute.gamma_peers(g, "V08") == ["V07", "V08", "V09"]
    v = 0.5
    d07, d08, d09 = 0.72 * 0.88, 0.65 * 0.92 * (1 + v), 0.81 * 0.75
    total = d07 + d08 + d09
    out = compute.combinatorial(g, "V08", v)
    assert out["demand"] == pytest.approx(d08, abs=1e-6)
    assert out["bid_share"] == pytest.approx(d08 / total, abs=1e-6)
    assert out["portfolio_roi"] == pytest.approx(
        (d07 * 0.14 + d08 * 0.11 + d09 * 0.18) / total, abs=1e-6)
    assert out["expected_return"] == pytest.approx(d08 / total * 0.11, abs=1e-6)
    assert out["rank"] == 1  # d08 = 0.897 beats 0.6336 and 0.6075
    assert compute.combinatorial(g, "V08", -1.0)["bid_share"] == 0.0  # fully rejected


def test_truncated_at_max_reach() -> None:
    leaves = compute.MAX_REACH + 50
    graph = {"nodes": [{"id": "hub"}] + [{"id": f"l{i}"} for i in range(leaves)],
             "edges": [{"source": "hub", "target": f"l{i}"} for i in range(leaves)]}
    hops, truncated = route(index_graph(graph, "star"), "hub", PULSE_RULES["bid"], 1.0)
    assert truncated and len(hops) == compute.MAX_REACH


def test_bad_node_and_attribute_are_named(g: compute.GraphIndex) -> None:
    with pytest.raises(NotFound, match="node: 'V99' is not a node of graph 'sample'"):
        process_event(g, "1-0", {"type": "bid", "node": "V99"})
    graph = {"nodes": [{"id": "x", "phase": "gamma", "attrs": {"roi_estimate": "high"}}]}
    with pytest.raises(ValidationFailed, match=r"node x: attrs\.roi_estimate must be a number"):
        process_event(index_graph(graph, "t"), "1-0", {"type": "bid", "node": "x"})


@st.composite
def dags(draw: Any) -> tuple[dict[str, Any], str, str]:
    n = draw(st.integers(1, 14))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                          max_size=40))
    graph = {"nodes": [{"id": f"n{i}"} for i in range(n)],
             "edges": [{"source": f"n{a}", "target": f"n{b}"} for a, b in edges if a != b]}
    return graph, f"n{draw(st.integers(0, n - 1))}", draw(st.sampled_from(sorted(PULSE_RULES)))


@settings(max_examples=200, deadline=None)
@given(dags())
def test_route_is_breadth_first_with_geometric_decay(case: tuple[dict[str, Any], str, str]
                                                     ) -> None:
    graph, origin, kind = case
    rule = PULSE_RULES[kind]
    hops, _ = route(index_graph(graph, "t"), origin, rule, 1.0)
    nxg = nx.DiGraph()
    nxg.add_nodes_from(n["id"] for n in graph["nodes"])
    nxg.add_edges_from((e["source"], e["target"]) for e in graph["edges"])
    view = {"downstream": nxg, "upstream": nxg.reverse(copy=False),
            "both": nxg.to_undirected(as_view=True)}[rule.direction]
    start = rule.sign * rule.urgency
    reachable = {n: d for n, d in nx.single_source_shortest_path_length(view, origin).items()
                 if d == 0 or (abs(start * rule.decay ** d) >= compute.MIN_VALUE
                               and d <= compute.MAX_HOPS)}
    assert {h.node: h.hop for h in hops} == reachable  # each once, at its BFS distance
    for h in hops:
        assert h.value == pytest.approx(start * rule.decay ** h.hop)


def test_documented_pulse_table_is_the_code() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "callback-engine.md").read_text()
    rows = [line.split("|")[1:7] for line in doc.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in PULSE_RULES]
    table = {r[0].strip(): compute.PulseRule(r[1].strip(), r[2].strip(), float(r[3]),
                                             float(r[4]), int(r[5])) for r in rows}
    assert table == PULSE_RULES
