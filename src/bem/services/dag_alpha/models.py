"""Request and response models of dag_alpha."""

from __future__ import annotations

from pydantic import BaseModel, Field

from bem.models.graph import GraphSource


class RunRequest(GraphSource):
    """Run the alpha phase of a graph given inline (`graph`) or stored (`graph_id`)."""


class NodeResult(BaseModel):
    functor: str
    formula: str = Field(description="the sfde formula the functor evaluates")
    level: int = Field(description="topological level (generation) of the node")
    agent: int | None
    inputs: dict[str, float] = Field(description="formula parameters, from node attributes")
    outputs: dict[str, float] = Field(description="formula outputs (units: GET /formulas)")
    own_score: float | None = Field(description="the functor's own 0..1 score, if it has one")
    predecessors: list[str] = Field(description="direct alpha predecessors")
    predecessor_score: float | None = Field(
        description="mean final score of the scored alpha predecessors")
    score: float | None = Field(
        description="(1 - 0.3) own_score + 0.3 predecessor_score, or whichever exists")


class Evaluation(BaseModel):
    """One vectorised sfde call: every node of one functor in one level."""

    level: int
    functor: str
    formula: str
    nodes: list[str]


class CriticalPath(BaseModel):
    path: list[str] = Field(description="longest weighted path of the whole graph")
    length: float = Field(description="sum of its edge weights")


class RunResult(BaseModel):
    graph_id: str
    levels: list[list[str]] = Field(description="topological levels of the whole graph")
    nodes: dict[str, NodeResult] = Field(description="alpha nodes by id")
    evaluations: list[Evaluation]
    manufacturing_score: float | None = Field(
        description="mean of the node scores weighted by material_weight_preference; null "
                    "when no node has a score or every weight is 0")
    weights: dict[str, float] = Field(description="the weight of each scored node")
    critical_path: CriticalPath
