"""graph_runtime's old `/process` payloads: the old graph, converted and analysed (POST /analyze).

- `graph_operation` (neon/json_transformer.py `transform_for_graph_runtime`):
  `{operation_type: build_and_execute, graph_data{nodes[{node_id, node_label, phase, agent,
  callback_type, trigger_functor, dictionary, allowed_callback_types}], edges[{edge_id,
  source_node, target_node, edge_type, weight, metadata}]}, node_data, edge_data,
  parameters}`. node_data / edge_data repeat graph_data's lists and are used when it is
  absent. A node becomes `{id: node_id, phase, agent, callback: callback_type, functor:
  trigger_functor, attrs: node_label and the scalars of dictionary}`; an edge `{source:
  source_node, target: target_node, kind: edge_type, weight}`; edge_id, metadata and
  allowed_callback_types have no place in the new graph.
- `components` (bem.models.legacy): one node per component, no edges.

"Build and execute" is the analysis: size, components, DAG check, degree centrality and
PageRank, plus levels and the critical path when the graph is a DAG (the transformer links
every pair of its nodes both ways, so its graphs are not).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bem.errors import PayloadTooLarge, ValidationFailed
from bem.models.graph import Callback, Phase
from bem.models.legacy import OldComponents, invalid, scalars
from bem.runtime.legacy import readdress
from bem.runtime.runtime import ServiceContext
from bem.runtime.service import OldPayload
from bem.services.graph_runtime.models import AnalyzeResult

Analyze = Callable[..., Awaitable[AnalyzeResult]]  # the service's own operation, handed in

OPERATION = "build_and_execute"
METRICS = ["summary", "components", "dag", "degree_centrality", "pagerank"]
DAG_METRICS = ["levels", "critical_path"]
_GRAPH_FIELD = re.compile(r"^graph\.(nodes|edges)(?:\[(\d+)\])?")


class OldNode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node_id: str = Field(min_length=1, max_length=128)
    node_label: str | None = Field(None, max_length=256, description="kept as attrs.node_label")
    phase: Phase = "alpha"
    agent: int | None = Field(None, ge=0, le=2**31 - 1)
    callback_type: Callback | None = None
    trigger_functor: str | None = Field(None, max_length=128)
    dictionary: dict[str, Any] = Field(default_factory=dict,
                                       description="its scalars become the node's attrs")
    allowed_callback_types: list[str] = Field(default_factory=list, description="not used")


class OldEdge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    edge_id: str | None = Field(None, description="not used")
    source_node: str = Field(min_length=1, max_length=128)
    target_node: str = Field(min_length=1, max_length=128)
    edge_type: str = Field("dependency", max_length=64)
    weight: float = Field(1.0, ge=0, allow_inf_nan=False)
    metadata: dict[str, Any] = Field(default_factory=dict, description="not used")


class OldGraphData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodes: list[OldNode] = Field(min_length=1)
    edges: list[OldEdge] = Field(default_factory=list)


class GraphOperation(BaseModel):
    """The old graph operation: build the graph and analyse it."""

    model_config = ConfigDict(extra="forbid")

    operation_type: Literal["build_and_execute"] = OPERATION
    graph_data: OldGraphData | None = None
    node_data: list[OldNode] | None = Field(None, description="used without graph_data")
    edge_data: list[OldEdge] | None = Field(None, description="used without graph_data")
    parameters: dict[str, Any] = Field(default_factory=dict,
                                       description="graph_type, execution_mode: not used "
                                                   "(always a NetworkX analysis)")

    @field_validator("operation_type", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        if value != OPERATION:
            raise invalid(f"only {OPERATION!r} (build the graph and analyse it), not "
                          f"{value!r}; for other analyses send the body of POST /analyze "
                          f"(graph, metrics) inside data")
        return value

    @model_validator(mode="after")
    def _has_graph(self) -> GraphOperation:
        if self.graph_data is None and not self.node_data:
            raise invalid("give graph_data (or node_data and edge_data)")
        return self


def to_graph(nodes: list[OldNode], edges: list[OldEdge], node_place: str, edge_place: str
             ) -> dict[str, Any]:
    """The new graph; a duplicate node or an edge to an unknown node is a 422 naming it."""
    seen: dict[str, int] = {}
    out_nodes = []
    for i, n in enumerate(nodes):
        if n.node_id in seen:
            field = f"{node_place}[{i}].node_id"
            raise ValidationFailed(f"{field}: duplicate node {n.node_id!r}", field=field)
        seen[n.node_id] = i
        attrs = scalars(n.dictionary)
        if n.node_label is not None:
            attrs["node_label"] = n.node_label
        out_nodes.append({"id": n.node_id, "phase": n.phase, "agent": n.agent,
                          "callback": n.callback_type, "functor": n.trigger_functor,
                          "attrs": attrs})
    out_edges = []
    for i, e in enumerate(edges):
        for end in ("source_node", "target_node"):
            if getattr(e, end) not in seen:
                field = f"{edge_place}[{i}].{end}"
                raise ValidationFailed(f"{field}: unknown node {getattr(e, end)!r}",
                                       field=field)
        out_edges.append({"source": e.source_node, "target": e.target_node,
                          "kind": e.edge_type, "weight": e.weight})
    return {"nodes": out_nodes, "edges": out_edges}


def renamer(nodes: str, edges: str, index: Callable[[int], int] = int) -> Callable[[str], str]:
    """`graph.nodes[i]...` (and edges) of the new graph -> where they are in the old payload."""
    def rename(field: str) -> str:
        match = _GRAPH_FIELD.match(field)
        if match is None:
            return field
        kind, i = match.group(1), match.group(2)
        where = nodes if kind == "nodes" else edges
        return f"{where}[{index(int(i))}]" + field[match.end():] if i else where
    return rename


async def analyse(ctx: ServiceContext, graph: dict[str, Any], rename: Callable[[str], str],
                  analyze: Analyze) -> dict[str, Any]:
    """The general metrics, and the DAG ones when it is a DAG."""
    try:
        found = await ctx.call(analyze, {"graph": graph, "metrics": METRICS})
        analysis = found.results.model_dump(mode="json", exclude_none=True)
        if analysis["dag"]["is_dag"]:
            more = await ctx.call(analyze, {"graph": graph, "metrics": DAG_METRICS})
            analysis.update(more.results.model_dump(mode="json", exclude_none=True))
    except (ValidationFailed, PayloadTooLarge) as exc:
        raise readdress(exc, rename) from None
    return {"graph_id": found.graph_id, "nodes": len(graph["nodes"]),
            "edges": len(graph["edges"]), "analysis": analysis}


async def serve_operation(old: GraphOperation, ctx: ServiceContext, _key: str, *,
                          analyze: Analyze) -> dict[str, Any]:
    if old.graph_data is not None:
        nodes, edges = old.graph_data.nodes, old.graph_data.edges
        places = ("data.graph_data.nodes", "data.graph_data.edges")
    else:
        nodes, edges = old.node_data or [], old.edge_data or []
        places = ("data.node_data", "data.edge_data")
    graph = to_graph(nodes, edges, *places)
    return {"operation_type": old.operation_type, "execution_status": "completed",
            **await analyse(ctx, graph, renamer(*places), analyze)}


async def serve_components(old: OldComponents, ctx: ServiceContext, _key: str, *,
                           analyze: Analyze) -> dict[str, Any]:
    picked = old.selected()
    nodes = [{"id": c.key, "attrs": c.attrs()} for _, c in picked]
    rename = renamer("data.components", "data.components", lambda i: picked[i][0])
    return {"execution_status": "completed",
            **await analyse(ctx, {"nodes": nodes, "edges": []}, rename, analyze)}


def payloads(analyze: Analyze) -> tuple[OldPayload, ...]:
    """The old payloads, served by the service's own `analyze` (handed in by the API module,
    which imports this one)."""
    return (OldPayload("graph_operation", GraphOperation,
                       partial(serve_operation, analyze=analyze)),
            OldPayload("components", OldComponents, partial(serve_components, analyze=analyze)))
