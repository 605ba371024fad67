"""graph_runtime (5004): graph store and NetworkX analytics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from bem.data import sample_project
from bem.errors import ServiceUnavailable, ValidationFailed
from bem.models.graph import Graph
from bem.runtime.cache import canonical
from bem.runtime.runtime import Ctx, ServiceContext
from bem.runtime.service import ServiceSpec
from bem.services.graph_runtime import cost, legacy
from bem.services.graph_runtime.layout import LayoutStore, Point, layout_key
from bem.services.graph_runtime.models import (
    AnalyzeRequest,
    AnalyzeResult,
    GraphWithId,
    Layout,
    LayoutUpdate,
    Position,
    StoredGraph,
)
from bem.services.graph_runtime.store import GraphStore, id_of_data

KERNELS = "bem.services.graph_runtime.kernels"

service = ServiceSpec(
    name="graph_runtime",
    title="BEM graph runtime",
    description=(
        "Stores project graphs under a content-addressed id (shared by every replica through "
        "Redis) and analyses them with NetworkX: size and density, weak and strong "
        "components, DAG check with a witness cycle, topological order and levels, "
        "centralities (degree, betweenness, closeness, PageRank), shortest and critical "
        "(longest weighted) paths, Louvain communities. Large analyses run in the compute "
        "pool; every analysis is cached by (graph, metrics, options). A graph's layout (where "
        "its nodes are drawn) is kept beside it, mutable while the graph is not."),
    uses_pool=True,
    compute_modules=(KERNELS,),
    legacy_operation="analyze",
)


@service.lifespan
async def _lifespan(ctx: ServiceContext) -> AsyncIterator[None]:
    ctx.state["store"] = GraphStore(ctx.runtime.redis, ctx.settings.max_stored_graphs)
    ctx.state["layouts"] = LayoutStore(ctx.runtime.redis)
    yield


def _store(ctx: ServiceContext) -> GraphStore:
    return ctx.state["store"]  # type: ignore[no-any-return]


@service.health_check
def _health(ctx: ServiceContext) -> dict[str, dict[str, Any]]:
    store = ctx.state.get("store")
    if store is None or ctx.runtime.redis.configured:
        return {}
    used = store.count_local()
    status = "warn" if used >= 0.9 * ctx.settings.max_stored_graphs else "pass"
    return {"graphs:stored": {"status": status, "observedValue": used,
                              "output": f"embedded store, limit {ctx.settings.max_stored_graphs}"}}


@service.operation("POST", "/graphs", status_code=201, idempotent=True)
async def store_graph(body: Graph, ctx: Ctx) -> StoredGraph:
    """Store a graph; the id is its content hash (storing it again changes nothing)."""
    body.check_size(ctx.settings, "body")
    gid, created = await _store(ctx).put(body.canonical())
    if created:  # announce on the bus (the ECM WebSocket's `graph` topic); best effort
        with contextlib.suppress(ServiceUnavailable):
            await ctx.runtime.bus.publish("graph", {"type": "graph_stored", "graph_id": gid,
                                                    "nodes": len(body.nodes),
                                                    "edges": len(body.edges)})
    return StoredGraph(graph_id=gid, nodes=len(body.nodes), edges=len(body.edges),
                       created=created)


@service.operation("GET", "/graphs/{graph_id}")
async def get_graph(graph_id: str, ctx: Ctx) -> GraphWithId:
    """A stored graph by id."""
    data = await _store(ctx).get(graph_id)
    return GraphWithId(graph_id=graph_id, **data)


@service.operation("GET", "/sample")
async def sample(ctx: Ctx) -> Graph:
    """The sample project V01-V10 (alpha feeds beta feeds gamma)."""
    return Graph.model_validate(sample_project())


@service.operation("POST", "/analyze", idempotent=True, exclude_none=True)
async def analyze(body: AnalyzeRequest, ctx: Ctx) -> AnalyzeResult:
    """Analyse a graph (inline or stored) for the requested metrics."""
    if body.graph is not None:
        body.graph.check_size(ctx.settings)
        data = canonical(body.graph.canonical())
        gid = id_of_data(data)
        nodes, edges = len(body.graph.nodes), len(body.graph.edges)
    else:
        gid = str(body.graph_id)
        data = await _store(ctx).get_raw(gid)
        nodes, edges = cost.size_bound(data)  # parsing it here would block the loop
    metrics = sorted(set(body.metrics))
    options = body.options.model_dump()

    async def run() -> dict[str, Any]:
        return await _run(ctx, gid, data, metrics, options, nodes, edges)

    results = await ctx.runtime.cache.memoize(
        "graph_runtime.analyze", {"graph": gid, "metrics": metrics, "options": options}, run)
    return AnalyzeResult(graph_id=gid, results=results)


async def _node_ids(ctx: ServiceContext, graph_id: str | None) -> set[str]:
    """The node ids of a stored graph (404 naming graph_id) or of the sample project."""
    graph = sample_project() if graph_id is None else await _store(ctx).get(graph_id)
    return {n["id"] for n in graph["nodes"]}


def _layout(graph_id: str | None, points: dict[str, Point]) -> Layout:
    return Layout(graph_id=graph_id,
                  positions={n: Position(x=x, y=y) for n, (x, y) in sorted(points.items())})


@service.operation("GET", "/layout")
async def get_layout(ctx: Ctx, graph_id: str | None = None) -> Layout:
    """Where the nodes of a stored graph (or, without graph_id, the sample project) are
    drawn."""
    await _node_ids(ctx, graph_id)
    layouts: LayoutStore = ctx.state["layouts"]
    return _layout(graph_id, await layouts.get(layout_key(graph_id)))


@service.operation("PATCH", "/layout", idempotent=True)
async def set_layout(body: LayoutUpdate, ctx: Ctx) -> Layout:
    """Move nodes of a stored graph (or the sample project); the graph itself, and so its
    id, stays as it is. Answers the whole layout and announces the move on the bus."""
    nodes = await _node_ids(ctx, body.graph_id)
    unknown = sorted(set(body.positions) - nodes)
    if unknown:
        raise ValidationFailed(
            f"positions.{unknown[0]}: no node {unknown[0]!r} in "
            f"{'graph ' + body.graph_id if body.graph_id else 'the sample project'}",
            field=f"positions.{unknown[0]}")
    moved = {n: (p.x, p.y) for n, p in body.positions.items()}
    layouts: LayoutStore = ctx.state["layouts"]
    layout = _layout(body.graph_id, await layouts.merge(layout_key(body.graph_id), moved))
    with contextlib.suppress(ServiceUnavailable):  # the ECM `graph` topic; best effort
        await ctx.runtime.bus.publish("graph", {
            "type": "layout_updated", "graph_id": body.graph_id, "timestamp": time.time(),
            "positions": {n: {"x": x, "y": y} for n, (x, y) in moved.items()}})
    return layout


async def _run(ctx: ServiceContext, gid: str, data: bytes, metrics: list[str],
               options: dict[str, Any], nodes: int, edges: int) -> dict[str, Any]:
    """Inline when the estimate is within INLINE_BUDGET_MS, else in the pool: one task per
    group of `cost.plan`, so the heavy metrics of one analysis run on several workers."""
    from bem.services.graph_runtime import kernels

    pool = ctx.runtime.pool
    budget = ctx.settings.inline_budget_ms / 1000
    seconds = cost.estimate(metrics, nodes, edges)
    fast = cost.compiled(seconds)
    groups = cost.plan(metrics, nodes, edges, pool.size, fast) if seconds >= budget else [
        metrics]
    parts = await asyncio.gather(*(
        pool.submit(kernels.analyze_stored, gid, data, group, options, fast,
                    size=round(seconds * 1e6), threshold=round(budget * 1e6))
        for group in groups))
    merged = {k: v for part in parts for k, v in part.items()}
    return {name: merged[name] for name in metrics}


service.legacy_payloads = legacy.payloads(analyze)
