"""The project graph: components are nodes, dependencies and relations are edges."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bem.errors import PayloadTooLarge
from bem.settings import Settings

Phase = Literal["alpha", "beta", "gamma"]
Callback = Literal["dag", "relational", "combinatorial"]
# Finite floats and 64-bit integers: what JSON and the canonical (orjson) hash can carry; a
# 400-digit integer would otherwise pass validation and crash the content hash (a 500).
AttrValue = (Annotated[float, Field(allow_inf_nan=False)]
             | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | bool | str)
NodeId = str

class Node(BaseModel):
    """A component of the project."""

    model_config = ConfigDict(extra="forbid")

    id: NodeId = Field(min_length=1, max_length=128, description="unique id, e.g. V01")
    phase: Phase = Field("alpha", description="alpha (spatial), beta (relational), gamma "
                                              "(combinatorial)")
    functor: str | None = Field(None, max_length=128,
                                description="the function evaluated for this node, "
                                            "e.g. evaluate_manufacturing")
    functor_type: str | None = Field(None, max_length=128,
                                     description="stateless_spatial | local_calcs | aggregator")
    callback: Callback | None = Field(None, description="dag | relational | combinatorial")
    # Bounded to GraphQL's Int (32-bit signed): a bigger number crashed the canonical orjson
    # hash (a 500) and could not be read back through GraphQL.
    agent: int | None = Field(None, ge=0, le=2**31 - 1, description="owning agent")
    attrs: dict[str, AttrValue] = Field(default_factory=dict,
                                        description="numeric or text attributes of the node")


class Edge(BaseModel):
    """A directed dependency: `source` feeds `target`."""

    model_config = ConfigDict(extra="forbid")

    source: NodeId = Field(min_length=1, max_length=128)
    target: NodeId = Field(min_length=1, max_length=128)
    kind: str = Field("dependency", max_length=64)
    weight: float = Field(1.0, ge=0, allow_inf_nan=False,
                          description="non-negative; duration or strength of the relation")


class Graph(BaseModel):
    """A project graph. Node ids are unique and every edge joins two of its nodes."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=256)
    nodes: list[Node] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)
    agent_coefficients: dict[NodeId, dict[str, float]] = Field(
        default_factory=dict,
        description="per node, criteria weights and limits of its agent "
                    "(e.g. material_weight_preference, build_cost_limit)")

    @model_validator(mode="after")
    def _consistent(self) -> Graph:
        ids: set[str] = set()
        for i, node in enumerate(self.nodes):
            if node.id in ids:
                raise ValueError(f"nodes[{i}].id: duplicate node id {node.id!r}")
            ids.add(node.id)
        for i, edge in enumerate(self.edges):
            for end in ("source", "target"):
                value = getattr(edge, end)
                if value not in ids:
                    raise ValueError(f"edges[{i}].{end}: unknown node {value!r}")
        for node_id in self.agent_coefficients:
            if node_id not in ids:
                raise ValueError(f"agent_coefficients.{node_id}: unknown node {node_id!r}")
        return self

    def check_size(self, settings: Settings, field: str = "graph") -> None:
        """413 when the graph is over the configured limits."""
        if len(self.nodes) > settings.max_graph_nodes:
            raise PayloadTooLarge(
                f"{field}.nodes: {len(self.nodes)} nodes exceed the limit of "
                f"{settings.max_graph_nodes} (MAX_GRAPH_NODES)", field=f"{field}.nodes")
        if len(self.edges) > settings.max_graph_edges:
            raise PayloadTooLarge(
                f"{field}.edges: {len(self.edges)} edges exceed the limit of "
                f"{settings.max_graph_edges} (MAX_GRAPH_EDGES)", field=f"{field}.edges")

    def canonical(self) -> dict[str, object]:
        """Order-independent plain form: equal graphs give equal content hashes."""
        data = self.model_dump(mode="json")
        data["nodes"] = sorted(data["nodes"], key=lambda n: n["id"])
        data["edges"] = sorted(data["edges"], key=lambda e: (e["source"], e["target"],
                                                             e["kind"], e["weight"]))
        return data


class GraphSource(BaseModel):
    """A graph given inline (`graph`) or by the id graph_runtime stored it under (`graph_id`):
    exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    graph: Graph | None = None
    graph_id: str | None = Field(None, min_length=1, max_length=64,
                                 description="id answered by graph_runtime POST /graphs")

    @model_validator(mode="after")
    def _one_source(self) -> GraphSource:
        if (self.graph is None) == (self.graph_id is None):
            raise ValueError("give exactly one of graph or graph_id")
        return self
