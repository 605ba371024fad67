"""GraphQL object types of the gateway and their construction from the services' answers.

What is stable across the platform is typed: the project graph (nodes navigable through
their edges), graph analyses, ids, statuses, paths and health. Answers whose shape is large
or still moving (formula catalogues, optimisation reports) are carried whole as `JSON`, next
to the typed fields picked out of them.
"""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any, get_args

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from bem.services.graph_runtime.models import Metric as MetricName
from bem.services.graphql import peers
from bem.services.graphql.calls import call
from bem.services.graphql.convert import jsonable, pick, without_unset
from bem.services.graphql.legacy_types import (
    ACTIVE,
    Coefficients,
    NodeProperties,
    NodeType,
    Position,
    coefficients_of,
    edge_ids,
    properties_of,
    ranked_domains,
)

Metric = strawberry.enum(
    Enum("Metric", {m: m for m in get_args(MetricName)}),  # type: ignore[misc]
    description="A graph_runtime analysis (see graph_runtime POST /analyze).")
DEFAULT_METRICS = [Metric.summary]  # type: ignore[attr-defined]


# --- the project graph ---------------------------------------------------------------------
class GraphIndex:
    """Nodes by id and adjacency of one graph, so nodes can walk their edges; and what its
    nodes read of the whole graph (agent coefficients, phases, the layout)."""

    def __init__(self, graph_id: str | None, coefficients: dict[str, dict[str, float]]
                 ) -> None:
        self.graph_id = graph_id  # None: the sample project
        self.coefficients = coefficients
        self.nodes: dict[str, Node] = {}
        self.succ: dict[str, list[str]] = {}
        self.pred: dict[str, list[str]] = {}
        self._layout: asyncio.Future[dict[str, Any]] | None = None

    def walk(self, ids: list[str]) -> list[Node]:
        return [self.nodes[i] for i in ids]

    def domain(self, node: str, rank: int) -> NodeType | None:
        """The domain the node's agent weighs `rank`-th most (0: most), if any."""
        ranked = ranked_domains(coefficients_of(self.coefficients.get(node, {})))
        return ranked[rank] if rank < len(ranked) else None

    async def layout(self, info: Info) -> dict[str, Any]:
        """The graph's layout, fetched once however many nodes ask (graph_runtime)."""
        if self._layout is None:
            self._layout = asyncio.ensure_future(call(
                info, peers.graph_runtime.get_layout, graph_id=self.graph_id))
        return jsonable(await self._layout)["positions"]  # type: ignore[no-any-return]


@strawberry.type(description="A component of a project graph.")
class Node:
    id: strawberry.ID
    phase: str = strawberry.field(description="alpha | beta | gamma")
    functor: str | None
    functor_type: str | None
    callback: str | None = strawberry.field(description="dag | relational | combinatorial")
    agent: int | None
    attrs: JSON
    index: strawberry.Private[GraphIndex]

    @strawberry.field(description="The nodes this one feeds (its out-edges' targets).")
    def successors(self) -> list[Node]:
        return self.index.walk(self.index.succ[self.id])

    @strawberry.field(description="The nodes feeding this one (its in-edges' sources).")
    def predecessors(self) -> list[Node]:
        return self.index.walk(self.index.pred[self.id])

    @strawberry.field(description="Where the node is drawn (graph_runtime GET /layout); null "
                                  "until placed with setNodePositions.")
    async def position(self, info: Info) -> Position | None:
        xy = (await self.index.layout(info)).get(self.id)
        return None if xy is None else Position(x=xy["x"], y=xy["y"])

    # --- the old platform's fields (legacy_types.py, docs/migration.md) ------------------
    @strawberry.field(deprecation_reason="use functorType, and agentCoefficients of the graph",
                      description="the domain the node's agent weighs most (Coefficients)")
    def type(self) -> NodeType | None:
        return self.index.domain(self.id, 0)

    @strawberry.field(deprecation_reason="use functor and functorType",
                      description="the same as `type`")
    def primary_functor(self) -> NodeType | None:
        return self.index.domain(self.id, 0)

    @strawberry.field(deprecation_reason="use agentCoefficients of the graph",
                      description="the domain the node's agent weighs second")
    def secondary_functor(self) -> NodeType | None:
        return self.index.domain(self.id, 1)

    @strawberry.field(deprecation_reason="use agentCoefficients of the graph")
    def coefficients(self) -> Coefficients:
        return Coefficients(**coefficients_of(self.index.coefficients.get(self.id, {})))

    @strawberry.field(deprecation_reason="use attrs")
    def properties(self) -> NodeProperties:
        return properties_of(self.attrs)

    @strawberry.field(deprecation_reason="no replacement: every node of a graph is active",
                      description="always `active`")
    def status(self) -> str:
        return ACTIVE


@strawberry.type(description="A directed dependency: `source` feeds `target`.")
class Edge:
    source: str
    target: str
    kind: str
    weight: float
    id: str = strawberry.field(deprecation_reason="use source and target",
                               description="`source->target` (`#2`... for parallel edges)")

    @strawberry.field(deprecation_reason="use kind")
    def relationship_type(self) -> str:
        return self.kind

    @strawberry.field(deprecation_reason="use kind and weight")
    def properties(self) -> JSON:
        return {"kind": self.kind, "weight": self.weight}


@strawberry.type(description="A project graph: components are nodes, dependencies edges.")
class Graph:
    graph_id: strawberry.ID | None = strawberry.field(
        description="content hash when the graph is stored; null for an unstored graph")
    name: str | None
    nodes: list[Node]
    edges: list[Edge]
    agent_coefficients: JSON
    data: strawberry.Private[dict[str, Any]]
    index: strawberry.Private[GraphIndex]

    @strawberry.field(description="One node by id (null when absent).")
    def node(self, id: strawberry.ID) -> Node | None:
        return self.index.nodes.get(str(id))

    @strawberry.field(deprecation_reason="use graphId and name",
                      description="`source` (sample or store), `graph_id`, `name`, `count` "
                                  "(nodes answered), `edges` (edges answered)")
    def metadata(self) -> JSON:
        return {"source": "store" if self.graph_id else "sample", "graph_id": self.graph_id,
                "name": self.name, "count": len(self.nodes), "edges": len(self.edges)}

    @strawberry.field(description="Analyse this graph (by id when it is stored); only the "
                                  "requested `metrics` are filled in.")
    async def analysis(self, info: Info,
                       metrics: list[Metric] = DEFAULT_METRICS,  # type: ignore[valid-type]
                       options: AnalyzeOptions | None = None) -> Analysis:
        source = {"graph_id": str(self.graph_id)} if self.graph_id else {"graph": self.data}
        return await analyze(info, source, metrics, options)


def graph_from(answer: Any) -> Graph:
    """A Graph from graph_runtime's answer (a stored graph carries its `graph_id`)."""
    data = jsonable(answer)
    gid = data.pop("graph_id", None)
    index = GraphIndex(gid, data.get("agent_coefficients") or {})
    for n in data["nodes"]:
        index.nodes[n["id"]] = Node(
            id=strawberry.ID(n["id"]), phase=n["phase"], functor=n.get("functor"),
            functor_type=n.get("functor_type"), callback=n.get("callback"),
            agent=n.get("agent"), attrs=n.get("attrs") or {}, index=index)
        index.succ[n["id"]], index.pred[n["id"]] = [], []
    for e in data["edges"]:
        index.succ[e["source"]].append(e["target"])
        index.pred[e["target"]].append(e["source"])
    return Graph(graph_id=strawberry.ID(gid) if gid else None, name=data.get("name"),
                 nodes=list(index.nodes.values()),
                 edges=[Edge(source=e["source"], target=e["target"], kind=e["kind"],
                             weight=e["weight"], id=eid)
                        for e, eid in zip(data["edges"], edge_ids(data["edges"]), strict=True)],
                 agent_coefficients=data.get("agent_coefficients") or {}, data=data,
                 index=index)


@strawberry.input(description="A node of a project graph (graph_runtime's Node).")
class NodeInput:
    id: strawberry.ID
    phase: str | None = strawberry.UNSET
    functor: str | None = strawberry.UNSET
    functor_type: str | None = strawberry.UNSET
    callback: str | None = strawberry.UNSET
    agent: int | None = strawberry.UNSET
    attrs: JSON | None = strawberry.UNSET


@strawberry.input(description="A directed dependency between two nodes.")
class EdgeInput:
    source: str
    target: str
    kind: str | None = strawberry.UNSET
    weight: float | None = strawberry.UNSET


@strawberry.input(description="A project graph; validated by graph_runtime (errors name the "
                              "field, e.g. `edges[0].target`).")
class GraphInput:
    name: str | None = strawberry.UNSET
    nodes: list[NodeInput]
    edges: list[EdgeInput] | None = strawberry.UNSET
    agent_coefficients: JSON | None = strawberry.UNSET


@strawberry.type(description="Where one node is drawn.")
class NodePosition:
    node: str
    x: float
    y: float


@strawberry.input(description="A node's new position (drawing coordinates, |x|, |y| <= 1e9).")
class NodePositionInput:
    node: str
    x: float
    y: float


@strawberry.type(description="Where a graph's nodes are drawn (graph_runtime keeps it beside "
                             "the graph, which stays as it is).")
class Layout:
    graph_id: strawberry.ID | None = strawberry.field(description="null: the sample project")
    positions: list[NodePosition] = strawberry.field(description="nodes never placed are "
                                                                 "absent")


def layout_from(answer: Any) -> Layout:
    data = jsonable(answer)
    gid = data["graph_id"]
    return Layout(graph_id=strawberry.ID(gid) if gid else None,
                  positions=[NodePosition(node=n, x=p["x"], y=p["y"])
                             for n, p in data["positions"].items()])


@strawberry.type(description="The answer to storing a graph.")
class StoredGraph:
    graph_id: strawberry.ID
    nodes: int
    edges: int
    created: bool = strawberry.field(description="false when it was already stored")


# --- analyses ------------------------------------------------------------------------------
@strawberry.input(description="Options of an analysis (graph_runtime AnalyzeOptions).")
class AnalyzeOptions:
    source: str | None = strawberry.UNSET
    target: str | None = strawberry.UNSET
    top_k: int | None = strawberry.UNSET
    pagerank_alpha: float | None = strawberry.UNSET


@strawberry.type
class Summary:
    nodes: int
    edges: int
    density: float
    is_dag: bool
    self_loops: int
    sources: list[str]
    sinks: list[str]
    phases: JSON = strawberry.field(description="node count per phase")


@strawberry.type
class Components:
    weak: list[list[str]]
    strong: list[list[str]]
    weak_count: int
    strong_count: int


@strawberry.type
class DagCheck:
    is_dag: bool
    cycle: list[str] | None = strawberry.field(description="a witness cycle [a, ..., a]")


@strawberry.type(description="A path through the graph and its total edge weight.")
class Path:
    path: list[str] | None = strawberry.field(description="null when there is no path")
    length: float | None
    source: str | None = None
    target: str | None = None


@strawberry.type(description="A node and its score in a centrality, highest first.")
class NodeScore:
    node: str
    score: float


@strawberry.type(description="The requested metrics of a graph; the others are null.")
class Analysis:
    graph_id: strawberry.ID
    summary: Summary | None
    components: Components | None
    dag: DagCheck | None
    topological_order: list[str] | None
    levels: list[list[str]] | None
    critical_path: Path | None = strawberry.field(description="longest weighted path")
    shortest_path: Path | None
    degree_centrality: list[NodeScore] | None
    betweenness: list[NodeScore] | None
    closeness: list[NodeScore] | None
    pagerank: list[NodeScore] | None
    communities: list[list[str]] | None
    results: JSON = strawberry.field(description="the analysis as graph_runtime answers it")


def _scores(values: dict[str, float] | None) -> list[NodeScore] | None:
    if values is None:
        return None
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    return [NodeScore(node=n, score=s) for n, s in ranked]


def analysis_from(answer: Any) -> Analysis:
    data = jsonable(answer, exclude_none=True)
    r = data["results"]
    return Analysis(
        graph_id=strawberry.ID(data["graph_id"]), summary=pick(Summary, r.get("summary")),
        components=pick(Components, r.get("components")),
        dag=pick(DagCheck, r.get("dag")),
        topological_order=r.get("topological_order"), levels=r.get("levels"),
        critical_path=pick(Path, r.get("critical_path")),
        shortest_path=pick(Path, r.get("shortest_path")),
        degree_centrality=_scores(r.get("degree_centrality")),
        betweenness=_scores(r.get("betweenness")), closeness=_scores(r.get("closeness")),
        pagerank=_scores(r.get("pagerank")), communities=r.get("communities"), results=r)


async def analyze(info: Info, source: dict[str, Any], metrics: list[Any],
                  options: AnalyzeOptions | None) -> Analysis:
    """graph_runtime's analysis of `source` ({graph_id} or {graph})."""
    payload = {**source, "metrics": [m.value for m in metrics]}
    if options is not None:
        payload["options"] = without_unset(options)
    return analysis_from(await call(info, peers.graph_runtime.analyze, payload))
