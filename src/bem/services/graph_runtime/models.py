"""Request and response models of graph_runtime."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bem.models.graph import Graph, GraphSource

Metric = Literal["summary", "components", "dag", "topological_order", "levels",
                 "critical_path", "shortest_path", "degree_centrality", "betweenness",
                 "closeness", "pagerank", "communities"]


class StoredGraph(BaseModel):
    graph_id: str = Field(description="content hash of the canonical graph")
    nodes: int
    edges: int
    created: bool = Field(description="false when the same graph was already stored")


class GraphWithId(Graph):
    graph_id: str

    def graph(self) -> Graph:
        """The graph alone (its canonical form, and so its content hash, without the id)."""
        return Graph.model_construct(**{name: getattr(self, name) for name in Graph.model_fields})


class AnalyzeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, description="shortest_path: start node")
    target: str | None = Field(None, description="shortest_path: end node")
    top_k: int | None = Field(None, ge=1, le=100_000,
                              description="centralities: keep the k highest")
    pagerank_alpha: float = Field(0.85, gt=0, lt=1, description="PageRank damping factor")


class AnalyzeRequest(GraphSource):
    """Analyse a graph given inline (`graph`) or by id (`graph_id`), not both."""

    metrics: list[Metric] = Field(default_factory=lambda: ["summary"], min_length=1,
                                  max_length=12)
    options: AnalyzeOptions = Field(default_factory=AnalyzeOptions)


class Summary(BaseModel):
    nodes: int
    edges: int
    density: float
    is_dag: bool
    self_loops: int
    sources: list[str]
    sinks: list[str]
    phases: dict[str, int]


class Components(BaseModel):
    weak: list[list[str]]
    strong: list[list[str]]
    weak_count: int
    strong_count: int


class DagCheck(BaseModel):
    is_dag: bool
    cycle: list[str] | None = Field(None, description="a witness cycle [a, ..., a] if any")


class PathResult(BaseModel):
    path: list[str] | None = Field(None, description="null when there is no path")
    length: float | None = Field(None, description="sum of edge weights along the path")
    source: str | None = None
    target: str | None = None


class Analysis(BaseModel):
    """One field per requested metric; the others are absent."""

    model_config = ConfigDict(extra="forbid")

    summary: Summary | None = None
    components: Components | None = None
    dag: DagCheck | None = None
    topological_order: list[str] | None = None
    levels: list[list[str]] | None = Field(None, description="topological generations")
    critical_path: PathResult | None = Field(None, description="longest weighted path")
    shortest_path: PathResult | None = None
    degree_centrality: dict[str, float] | None = None
    betweenness: dict[str, float] | None = None
    closeness: dict[str, float] | None = None
    pagerank: dict[str, float] | None = None
    communities: list[list[str]] | None = Field(None, description="Louvain, seed 42")


class AnalyzeResult(BaseModel):
    graph_id: str
    results: Analysis


# Positions are drawing coordinates (pixels, or whatever unit the client draws in); the
# bound keeps them finite and representable by every client's float.
COORDINATE_LIMIT = 1e9


class Position(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: float = Field(ge=-COORDINATE_LIMIT, le=COORDINATE_LIMIT, allow_inf_nan=False)
    y: float = Field(ge=-COORDINATE_LIMIT, le=COORDINATE_LIMIT, allow_inf_nan=False)


class LayoutUpdate(BaseModel):
    """New positions of some nodes of a graph; the other nodes keep theirs."""

    model_config = ConfigDict(extra="forbid")

    graph_id: str | None = Field(None, min_length=1, max_length=64,
                                 description="a stored graph; null = the sample project")
    positions: dict[str, Position] = Field(min_length=1,
                                           description="node id -> its new position")


class Layout(BaseModel):
    """Where a graph's nodes are drawn; nodes never placed are absent."""

    graph_id: str | None = Field(description="the stored graph; null = the sample project")
    positions: dict[str, Position]
