"""GraphQL types of a DAG run (dag_alpha): the alpha phase evaluated level by level."""

from __future__ import annotations

from typing import Any

import strawberry

from bem.services.graphql.convert import jsonable, pick
from bem.services.graphql.types import JSON, Path


@strawberry.type(description="One alpha node's evaluation.")
class NodeRun:
    node: str
    functor: str
    formula: str = strawberry.field(description="the sfde formula the functor evaluates")
    level: int
    agent: int | None
    inputs: JSON = strawberry.field(description="formula parameters, from node attributes")
    outputs: JSON = strawberry.field(description="formula outputs (units: sfde formulas)")
    own_score: float | None
    predecessors: list[str]
    predecessor_score: float | None
    score: float | None


@strawberry.type(description="One vectorised sfde call: every node of a functor in a level.")
class DagEvaluation:
    level: int
    functor: str
    formula: str
    nodes: list[str]


@strawberry.type(description="The alpha phase of a graph, run level by level.")
class DagRun:
    graph_id: strawberry.ID
    levels: list[list[str]]
    nodes: list[NodeRun]
    evaluations: list[DagEvaluation]
    manufacturing_score: float | None = strawberry.field(
        description="node scores weighted by material_weight_preference")
    weights: JSON
    critical_path: Path


def dag_run_from(answer: Any) -> DagRun:
    data = jsonable(answer)
    return DagRun(
        graph_id=strawberry.ID(data["graph_id"]), levels=data["levels"],
        nodes=[pick(NodeRun, {"node": node, **result})
               for node, result in data["nodes"].items()],
        evaluations=[pick(DagEvaluation, e) for e in data["evaluations"]],
        manufacturing_score=data["manufacturing_score"], weights=data["weights"],
        critical_path=pick(Path, data["critical_path"]))
