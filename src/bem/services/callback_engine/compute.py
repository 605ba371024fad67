"""Pulse routing and the beta / gamma callbacks: pure functions over plain data.

Every quantity here is dimensionless: a pulse value is an intensity relative to a nominal
pulse (1.0), attributes are the sample project's scores and rates in [0, 1]. The model is
documented in docs/callback-engine.md; the rules, in short:

Routing. A pulse of type t entering node o with magnitude m starts at
`v0 = sign(t) * m * urgency(t)` and spreads breadth-first along the edges in the direction
of t (downstream = to successors, upstream = to predecessors, both). A node first reached
at hop h receives `v(h) = v0 * decay(t) ** h` (edge weights are durations in the sample, so
they do not attenuate). Spreading stops when |v| falls below MIN_VALUE, after MAX_HOPS hops,
or after MAX_REACH nodes (the result then says `truncated`). Neighbours are visited in id
order, so a route is deterministic.

Callbacks. Nodes of the pulse's target phase run their phase's callback with the value they
receive; the others relay it.

- beta, relational (compliance across edges), at node n with value v:
  s = regulatory_strictness, p = user_priority_score, own = compliance_pass.
  An incoming edge u -> n complies when the supplier's quality q(u) >= s, with q(u) =
  compliance_pass (1/0) when u carries a verdict, else buildability_score, else 1 (a node
  with no measure imposes no constraint). support = share of complying incoming edges (1
  with none); score = own * support; adjusted = clamp(score + v * p * (1 - s), 0, 1): the
  pulse moves compliance in proportion to the user's priority, damped by strictness;
  compliant = adjusted >= s.
- gamma, combinatorial (aggregation of bids and investment over neighbours), at node g:
  peers P = g, the gamma nodes adjacent to g and the gamma nodes sharing a supplier with g
  (they compete for the same supply). Demand d_x = bid_match_score_x * occupancy_rate_x
  (how well x's bid matches times how much of it is used); the pulse scales g's own demand,
  d_g' = d_g * max(0, 1 + v). bid_share = d_g' / sum(d'), portfolio_roi = sum(d'_x *
  roi_estimate_x) / sum(d') (the demand-weighted ROI of the neighbourhood: where the
  investment goes), expected_return = bid_share * roi_estimate_g, rank = 1 + number of
  peers with a larger demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bem.errors import NotFound, ValidationFailed

Direction = Literal["downstream", "upstream", "both"]


@dataclass(frozen=True)
class PulseRule:
    direction: Direction
    target_phase: str  # whose callback the pulse triggers; other phases relay it
    urgency: float  # share of the magnitude the pulse starts with, (0, 1]
    decay: float  # factor applied at each hop, (0, 1)
    sign: int  # +1 reinforces the nodes reached, -1 weakens them


# Why each row: a bid is made on a component and priced by the aggregators it feeds;
# occupancy news concerns neighbouring aggregators on both sides; a compliance change must
# be re-checked by the relational nodes downstream; a fit change affects relations on both
# sides; capital flows down to the aggregators and fades slowly; decay is a weak, fast-
# fading erosion of value; a rejection travels back to the checks that let it through.
PULSE_RULES: dict[str, PulseRule] = {
    "bid": PulseRule("downstream", "gamma", 0.8, 0.85, 1),
    "occupancy": PulseRule("both", "gamma", 0.5, 0.7, 1),
    "compliancy": PulseRule("downstream", "beta", 0.9, 0.8, 1),
    "fit": PulseRule("both", "beta", 0.6, 0.75, 1),
    "investment": PulseRule("downstream", "gamma", 0.7, 0.9, 1),
    "decay": PulseRule("downstream", "gamma", 0.3, 0.5, -1),
    "reject": PulseRule("upstream", "beta", 1.0, 0.9, -1),
}
MIN_VALUE = 0.05  # weaker pulses stop spreading
MAX_HOPS = 8
MAX_REACH = 256  # nodes one event may reach (bounds its result and its published pulses)


@dataclass(frozen=True)
class GraphIndex:
    """What routing needs of a graph: phases, attributes, sorted neighbour lists."""

    label: str  # the graph_id, or "sample"
    phase: dict[str, str]
    attrs: dict[str, dict[str, Any]]
    succ: dict[str, tuple[str, ...]]
    pred: dict[str, tuple[str, ...]]


def index_graph(graph: dict[str, Any], label: str) -> GraphIndex:
    """Index a plain graph `{nodes: [{id, phase, attrs}], edges: [{source, target}]}`."""
    succ: dict[str, set[str]] = {n["id"]: set() for n in graph["nodes"]}
    pred: dict[str, set[str]] = {n["id"]: set() for n in graph["nodes"]}
    for edge in graph.get("edges", ()):
        succ[edge["source"]].add(edge["target"])
        pred[edge["target"]].add(edge["source"])
    return GraphIndex(
        label=label,
        phase={n["id"]: n.get("phase", "alpha") for n in graph["nodes"]},
        attrs={n["id"]: dict(n.get("attrs") or {}) for n in graph["nodes"]},
        succ={k: tuple(sorted(v)) for k, v in succ.items()},
        pred={k: tuple(sorted(v)) for k, v in pred.items()})


@dataclass(frozen=True)
class Hop:
    node: str
    hop: int
    value: float
    via: str | None  # the node it came from (None at the origin)


def neighbours(g: GraphIndex, node: str, direction: Direction) -> tuple[str, ...]:
    if direction == "downstream":
        return g.succ[node]
    if direction == "upstream":
        return g.pred[node]
    return tuple(sorted(set(g.succ[node]) | set(g.pred[node])))


def route(g: GraphIndex, origin: str, rule: PulseRule, magnitude: float
          ) -> tuple[list[Hop], bool]:
    """The nodes a pulse reaches, breadth-first; (hops, truncated)."""
    if origin not in g.phase:
        raise NotFound(f"node: {origin!r} is not a node of graph {g.label!r}", field="node")
    start = rule.sign * magnitude * rule.urgency
    hops = [Hop(origin, 0, start, None)]
    seen = {origin}
    frontier = [origin]
    for h in range(1, MAX_HOPS + 1):
        value = start * rule.decay ** h
        if abs(value) < MIN_VALUE:
            break
        nxt: list[str] = []
        for node in frontier:
            for other in neighbours(g, node, rule.direction):
                if other in seen:
                    continue
                if len(hops) >= MAX_REACH:
                    return hops, True
                seen.add(other)
                nxt.append(other)
                hops.append(Hop(other, h, value, node))
        frontier = nxt
    return hops, False


def number(g: GraphIndex, node: str, name: str, default: float) -> float:
    """A numeric attribute (booleans count as 1/0); a text value is a clear error."""
    value = g.attrs[node].get(name, default)
    if isinstance(value, bool | int | float):
        return float(value)
    raise ValidationFailed(f"graph {g.label!r}: node {node}: attrs.{name} must be a number, "
                           f"got {value!r}", field=f"attrs.{name}")


def clamp01(x: float) -> float:
    return min(1.0, max(0.0, x))


def supplier_quality(g: GraphIndex, node: str) -> float:
    attrs = g.attrs[node]
    if "compliance_pass" in attrs:
        return number(g, node, "compliance_pass", 1.0)
    return number(g, node, "buildability_score", 1.0)


def relational(g: GraphIndex, node: str, value: float) -> dict[str, Any]:
    """Beta callback: compliance of `node` across its incoming edges (module docstring)."""
    s = clamp01(number(g, node, "regulatory_strictness", 0.5))
    p = clamp01(number(g, node, "user_priority_score", 0.5))
    own = 1.0 if number(g, node, "compliance_pass", 1.0) else 0.0
    failing = [[u, node] for u in g.pred[node] if supplier_quality(g, u) < s]
    support = 1.0 - len(failing) / len(g.pred[node]) if g.pred[node] else 1.0
    score = own * support
    adjusted = clamp01(score + value * p * (1.0 - s))
    return {"callback": "relational", "strictness": s, "priority": p, "own_pass": bool(own),
            "support": round(support, 6), "failing_edges": failing, "score": round(score, 6),
            "adjusted": round(adjusted, 6), "compliant": adjusted >= s}


def gamma_peers(g: GraphIndex, node: str) -> list[str]:
    near = set(g.succ[node]) | set(g.pred[node])
    for supplier in g.pred[node]:
        near |= set(g.succ[supplier])
    return sorted({node} | {x for x in near if g.phase[x] == "gamma"})


def combinatorial(g: GraphIndex, node: str, value: float) -> dict[str, Any]:
    """Gamma callback: aggregate bids and investment over `node`'s peers (module docstring)."""
    peers = gamma_peers(g, node)
    demand = {x: max(0.0, number(g, x, "bid_match_score", 0.0))
              * max(0.0, number(g, x, "occupancy_rate", 0.0)) for x in peers}
    demand[node] *= max(0.0, 1.0 + value)
    total = sum(demand.values())
    roi = {x: number(g, x, "roi_estimate", 0.0) for x in peers}
    share = demand[node] / total if total > 0 else 0.0
    portfolio = sum(demand[x] * roi[x] for x in peers) / total if total > 0 else 0.0
    return {"callback": "combinatorial", "peers": peers,
            "demand": round(demand[node], 6), "bid_share": round(share, 6),
            "portfolio_roi": round(portfolio, 6),
            "expected_return": round(share * roi[node], 6),
            "rank": 1 + sum(1 for x in peers if demand[x] > demand[node])}


def callback(g: GraphIndex, node: str, value: float) -> dict[str, Any]:
    """The phase callback of a node of the pulse's target phase (beta or gamma)."""
    return relational(g, node, value) if g.phase[node] == "beta" else combinatorial(g, node, value)


def process_event(g: GraphIndex, event_id: str, event: dict[str, Any]
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Route one event and run its callbacks: (result, pulses to publish)."""
    rule = PULSE_RULES[event["type"]]
    hops, truncated = route(g, event["node"], rule, float(event.get("magnitude", 1.0)))
    pulses: list[dict[str, Any]] = []
    callbacks: list[dict[str, Any]] = []
    for h in hops:
        phase = g.phase[h.node]
        outcome = callback(g, h.node, h.value) if phase == rule.target_phase else None
        pulse = {"type": "pulse", "event_id": event_id, "pulse_type": event["type"],
                 "source": event["node"], "node": h.node, "phase": phase,
                 "value": round(h.value, 6), "hop": h.hop, "via": h.via,
                 "graph_id": event.get("graph_id"), "magnitude": event.get("magnitude", 1.0),
                 "callback": outcome["callback"] if outcome else None}
        pulses.append(pulse)
        if outcome is not None:
            pulse["outcome"] = outcome
            callbacks.append({"node": h.node, "hop": h.hop, "value": round(h.value, 6),
                              **outcome})
    result = {"origin": event["node"], "pulse_type": event["type"],
              "graph_id": event.get("graph_id"), "direction": rule.direction,
              "target_phase": rule.target_phase, "reached": len(hops),
              "pulses": len(pulses), "truncated": truncated, "callbacks": callbacks}
    return result, pulses
