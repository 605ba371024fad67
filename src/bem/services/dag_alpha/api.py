"""dag_alpha (5000): run the alpha phase of a project graph, level by level.

It owns no maths of its own: the DAG check, levels and critical path come from graph_runtime
and every functor is an sfde formula, both reached through the service client (in-process
when colocated, HTTP otherwise), so the answer is the same in every topology. The rules that
are its own (which attribute feeds which parameter, propagation, aggregate) are in
`compute.py` and docs/formulas.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from bem.errors import ValidationFailed
from bem.models.graph import Graph
from bem.runtime.cache import content_hash
from bem.runtime.runtime import Ctx, ServiceContext
from bem.runtime.service import ServiceSpec
from bem.services.dag_alpha import compute, legacy  # plain Python, no NumPy: cheap
from bem.services.dag_alpha.models import RunRequest, RunResult
from bem.services.graph_runtime.models import AnalyzeRequest

service = ServiceSpec(
    name="dag_alpha",
    title="BEM DAG alpha",
    description=(
        "Runs the alpha phase of a project graph: checks that it is a DAG (a cycle is a 422 "
        "naming it), evaluates each alpha node's functor (`evaluate_manufacturing`, "
        "`convert_to_geometry`, `evaluate_site_fit`, each an sfde formula over node "
        "attributes) level by level with one vectorised sfde call per level and functor, "
        "blends each node's score with its alpha predecessors' (score = 0.7 own + 0.3 mean "
        "of predecessors), and returns per-node results, the aggregate manufacturing score "
        "(weighted by the agents' material_weight_preference) and the critical path. "
        "Uses graph_runtime and sfde through the service client; whole runs are cached by "
        "graph id. See docs/formulas.md."),
    legacy_operation="run",
)

_COLUMN_FIELD = re.compile(r"columns(?:\.(\w+))?\[(\d+)\]")
_ROWS_AFFECTED = re.compile(r" \(\d+ rows affected\)$")


@service.operation("POST", "/run", idempotent=True)
async def run(body: RunRequest, ctx: Ctx) -> RunResult:
    """Evaluate the alpha functors of a graph (inline or stored) in topological levels."""
    # a peer: imported on the first call, not at start-up
    from bem.services.graph_runtime.api import get_graph
    if body.graph is not None:
        graph = body.graph
    else:
        graph = (await ctx.call(get_graph, graph_id=body.graph_id)).graph()
    graph.check_size(ctx.settings)
    canonical = graph.canonical()
    source = {"graph_id": body.graph_id} if body.graph_id else {"graph": canonical}
    # graph_runtime's id for this graph: an inline graph and its stored id share one entry
    key = {"graph_id": content_hash(canonical)[:32], "rules": compute.RULES_VERSION}

    async def evaluate() -> dict[str, Any]:
        return await _run(ctx, graph, source)

    return RunResult.model_validate(
        await ctx.runtime.cache.memoize("dag_alpha.run", key, evaluate))


service.legacy_payloads = legacy.payloads(run)


async def _run(ctx: ServiceContext, graph: Graph, source: dict[str, Any]) -> dict[str, Any]:
    # a peer: imported on the first call, not at start-up
    from bem.services.graph_runtime.api import analyze
    nodes = compute.alpha_nodes(graph)  # local checks first: no peer call for a bad node
    weight_of = compute.weights(graph, nodes)
    # A cycle is already a 422 naming it; the graph was validated: no error of ours here.
    found = await ctx.call(analyze, AnalyzeRequest.model_validate(
        {**source, "metrics": ["dag", "levels", "critical_path"]}))
    levels = found.results.levels or []
    preds = compute.predecessors(graph, nodes)
    batches = compute.batches(levels, nodes)
    scores: dict[str, float | None] = {}
    results: dict[str, dict[str, Any]] = {}
    for level in sorted({b[0] for b in batches}):
        here = [b for b in batches if b[0] == level]
        outputs = await asyncio.gather(*(
            _evaluate(ctx, functor, [nodes[i] for i in ids]) for _, functor, ids in here))
        for (_, _functor, ids), out in zip(here, outputs, strict=True):
            for row, node_id in enumerate(ids):
                result = compute.node_result(nodes[node_id], level,
                                             {k: v[row] for k, v in out.items()},
                                             preds[node_id], scores)
                results[node_id] = result
                scores[node_id] = result["score"]
    aggregate, used = compute.aggregate(scores, weight_of)
    critical = found.results.critical_path
    return {"graph_id": found.graph_id, "levels": levels,
            "nodes": dict(sorted(results.items())),
            "evaluations": [{"level": lv, "functor": f,
                             "formula": compute.FUNCTORS[f].formula, "nodes": ids}
                            for lv, f, ids in batches],
            "manufacturing_score": aggregate, "weights": used,
            "critical_path": critical.model_dump(mode="json") if critical else None}


async def _evaluate(ctx: ServiceContext, functor: str, batch: Sequence[Any]
                    ) -> dict[str, list[float]]:
    """One vectorised sfde call for the nodes of one functor in one level."""
    # a peer: imported on the first call, not at start-up
    from bem.services.sfde.api import evaluate
    formula = compute.FUNCTORS[functor].formula
    try:
        # A mapping, not an EvaluateRequest: the columns are the client's attributes, and
        # sfde's own validation names the bad row (re-addressed to its node below).
        result = await ctx.call(evaluate, {"formula": formula,
                                           "columns": compute.columns(functor, batch)})
    except ValidationFailed as exc:
        raise _on_nodes(exc, functor, batch) from None
    return result.outputs  # type: ignore[no-any-return]


def _on_nodes(exc: ValidationFailed, functor: str, batch: Sequence[Any]) -> ValidationFailed:
    """Re-address sfde's `columns.<param>[row]` errors to the node attributes they came from."""
    attrs = compute.FUNCTORS[functor].attrs
    details = []
    for detail in exc.details or [{"field": exc.field or "", "message": exc.message}]:
        match = _COLUMN_FIELD.fullmatch(str(detail.get("field")))
        if match is None:
            return exc  # not about one row's value: pass sfde's own answer on
        param, row = match.group(1), int(match.group(2))
        node = batch[row]
        where = f"graph.nodes[{node.index}].attrs"
        where += f".{attrs[param]}" if param else ""
        problem = _ROWS_AFFECTED.sub("", str(detail.get("message")))  # rows of sfde's batch
        details.append({"field": where, "type": detail.get("type", "value_error"),
                        "message": f"node {node.id} ({functor}): {problem}"})
    return compute.validation_error(details)
