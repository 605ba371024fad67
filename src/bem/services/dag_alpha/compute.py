"""The alpha phase as plain functions over the project graph (no I/O: the API calls peers).

- Each alpha functor evaluates one sfde formula; its inputs are node attributes.
- Nodes are evaluated level by level (topological generations); within a level, the nodes
  of one functor form one batch: one vectorised sfde call.
- Propagation: a node sees the final scores of its direct alpha predecessors (earlier
  levels). With own score s and predecessor mean p: score = (1 - BETA) s + BETA p; s alone
  without scored predecessors; p alone for a functor without a score of its own.
- Aggregate manufacturing score: the mean of the final node scores weighted by each node's
  agent coefficient `material_weight_preference` (1 when absent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bem.errors import ValidationFailed
from bem.models.graph import Graph

RULES_VERSION = 1  # in the cache key: bump when a rule, a mapping or a formula used changes
BETA = 0.3  # weight of the predecessors' mean score in a node's final score
WEIGHT_COEFFICIENT = "material_weight_preference"
DIGITS = 12  # results are rounded so that equal inputs give byte-equal answers


@dataclass(frozen=True)
class Functor:
    formula: str  # the sfde formula evaluated
    attrs: Mapping[str, str]  # formula parameter -> node attribute supplying it
    score: str | None  # the formula output that is the node's own score (0..1), if any


FUNCTORS: dict[str, Functor] = {
    "evaluate_manufacturing": Functor(
        "manufacturing_score",
        {"density": "component_density", "material_strength": "material_strength",
         "buildability": "buildability_score"}, "score"),
    "convert_to_geometry": Functor(
        "prism_geometry",
        {"length": "length_m", "width": "width_m", "height": "height_m",
         "density": "component_density"}, None),
    "evaluate_site_fit": Functor(
        "site_fit",
        {"footprint_area": "footprint_area_m2", "site_area": "site_area_m2",
         "height": "height_m", "height_limit": "height_limit_m",
         "max_coverage": "max_site_coverage"}, "fit"),
}


@dataclass(frozen=True)
class AlphaNode:
    id: str
    index: int  # position in graph.nodes, for error fields
    functor: str
    agent: int | None
    inputs: dict[str, float]  # formula parameter -> value


def validation_error(details: list[dict[str, str]]) -> ValidationFailed:
    return ValidationFailed.naming(details)  # type: ignore[arg-type]


def _node_problems(index: int, node: Any) -> list[dict[str, str]]:
    where = f"graph.nodes[{index}]"
    if node.functor not in FUNCTORS:
        what = "has no functor" if node.functor is None else \
            f"has the unknown alpha functor {node.functor!r}"
        return [{"field": f"{where}.functor", "type": "functor",
                 "message": f"alpha node {node.id} {what}; alpha functors: "
                            f"{', '.join(sorted(FUNCTORS))}"}]
    problems = []
    for attr in FUNCTORS[node.functor].attrs.values():
        value = node.attrs.get(attr)
        if value is None:
            problems.append({"field": f"{where}.attrs.{attr}", "type": "missing",
                             "message": f"node {node.id} ({node.functor}) needs this "
                                        f"attribute"})
        elif isinstance(value, bool) or not isinstance(value, int | float):
            # (the Graph model already keeps numbers finite and within 64 bits)
            problems.append({"field": f"{where}.attrs.{attr}", "type": "number",
                             "message": f"node {node.id}: must be a number, got "
                                        f"{str(value)[:40]!r}"})
    return problems


def alpha_nodes(graph: Graph) -> dict[str, AlphaNode]:
    """The alpha nodes with their formula inputs; one 422 listing every problem found."""
    problems: list[dict[str, str]] = []
    nodes: dict[str, AlphaNode] = {}
    for index, node in enumerate(graph.nodes):
        if node.phase != "alpha":
            continue
        found = _node_problems(index, node)
        if found:
            problems += found
            continue
        functor = FUNCTORS[str(node.functor)]
        nodes[node.id] = AlphaNode(
            node.id, index, str(node.functor), node.agent,
            {param: float(node.attrs[attr]) for param, attr in functor.attrs.items()})
    if problems:
        raise validation_error(problems)
    return nodes


def weights(graph: Graph, nodes: Mapping[str, AlphaNode]) -> dict[str, float]:
    """Each alpha node's weight in the aggregate (its material_weight_preference, or 1)."""
    out = {}
    for node_id in sorted(nodes):
        value = graph.agent_coefficients.get(node_id, {}).get(WEIGHT_COEFFICIENT, 1.0)
        if not (math.isfinite(value) and value >= 0):
            where = f"graph.agent_coefficients.{node_id}.{WEIGHT_COEFFICIENT}"
            raise ValidationFailed(f"{where}: must be a finite number >= 0, got {value}",
                                   field=where)
        out[node_id] = value
    return out


def predecessors(graph: Graph, nodes: Mapping[str, AlphaNode]) -> dict[str, list[str]]:
    """Direct alpha predecessors of each alpha node, sorted."""
    preds: dict[str, set[str]] = {node_id: set() for node_id in nodes}
    for edge in graph.edges:
        if edge.target in preds and edge.source in nodes and edge.source != edge.target:
            preds[edge.target].add(edge.source)
    return {k: sorted(v) for k, v in sorted(preds.items())}


def batches(levels: Sequence[Sequence[str]], nodes: Mapping[str, AlphaNode]
            ) -> list[tuple[int, str, list[str]]]:
    """(level, functor, node ids): one vectorised formula evaluation each, in level order."""
    out = []
    for level, members in enumerate(levels):
        by_functor: dict[str, list[str]] = {}
        for node_id in members:
            if node_id in nodes:
                by_functor.setdefault(nodes[node_id].functor, []).append(node_id)
        out += [(level, f, sorted(ids)) for f, ids in sorted(by_functor.items())]
    return out


def columns(functor: str, batch: Sequence[AlphaNode]) -> dict[str, list[float]]:
    """The sfde `columns` of one batch: one value per node for each formula parameter."""
    return {param: [n.inputs[param] for n in batch] for param in FUNCTORS[functor].attrs}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def node_result(node: AlphaNode, level: int, outputs: Mapping[str, float],
                preds: Sequence[str], scores: Mapping[str, float | None]) -> dict[str, Any]:
    """One node's result; its final score blends in its predecessors' (see module doc)."""
    functor = FUNCTORS[node.functor]
    own = outputs[functor.score] if functor.score else None
    seen = [s for p in preds if (s := scores.get(p)) is not None]
    mean = sum(seen) / len(seen) if seen else None
    if own is not None and mean is not None:
        score: float | None = (1.0 - BETA) * own + BETA * mean
    else:
        score = own if own is not None else mean
    return {"functor": node.functor, "formula": functor.formula, "level": level,
            "agent": node.agent, "inputs": dict(sorted(node.inputs.items())),
            "outputs": {k: _round(v) for k, v in sorted(outputs.items())},
            "own_score": _round(own), "predecessors": list(preds),
            "predecessor_score": _round(mean), "score": _round(score)}


def aggregate(scores: Mapping[str, float | None], weight_of: Mapping[str, float]
              ) -> tuple[float | None, dict[str, float]]:
    """Weighted mean of the scored nodes, and the weights used (None if nothing weighs)."""
    used = {k: weight_of[k] for k in sorted(scores) if scores[k] is not None}
    total = sum(used.values())
    if total == 0:
        return None, used
    value = sum(w * float(scores[k]) for k, w in used.items()) / total  # type: ignore[arg-type]
    return _round(value), used
