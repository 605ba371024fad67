"""dag_alpha's old `/process` payloads: both run the alpha phase (POST /run) for real.

- `dag_request` (neon/json_transformer.py `transform_for_dag_alpha`): `{dag_id, input_data,
  node_sequence, callback_type, parameters{phase, execution_mode}}`. The old service looked
  the node_sequence up in the platform's one project graph (node_dictionarY.json, V01-V10),
  whose successor is the sample project (graph_runtime `GET /sample`): the answer is
  `POST /run` over the part of it the sequence names (the induced subgraph; empty: all).
- `components` (bem.models.legacy): the components are the graph, one alpha node each
  (functor `evaluate_manufacturing`, no edges); an attribute the functor needs and the
  component lacks takes the `stateless_spatial` type's default (functor_types), and the
  answer lists it under `assumed`.

`results` is the RunResult (`manufacturing_score`, `nodes`, `critical_path`, ...) plus the old
`dag_execution_status` and `nodes_processed` (and `dag_id`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bem.errors import PayloadTooLarge, ValidationFailed
from bem.models.legacy import OldComponent, OldComponents, invalid
from bem.runtime.legacy import readdress
from bem.runtime.runtime import ServiceContext
from bem.runtime.service import OldPayload
from bem.services.dag_alpha.compute import FUNCTORS
from bem.services.dag_alpha.models import RunResult

Run = Callable[..., Awaitable[RunResult]]  # the service's own operation, handed in

FUNCTOR = "evaluate_manufacturing"  # what an old component is evaluated with
FUNCTOR_TYPE = "stateless_spatial"
_NODE_FIELD = re.compile(r"^graph\.nodes\[(\d+)\](?:\.attrs)?")


class DagParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phase: str = Field("alpha", description="must be alpha: dag_alpha runs the alpha phase")
    execution_mode: str = Field("deterministic", description="must be deterministic (it is)")

    @field_validator("phase")
    @classmethod
    def _alpha(cls, value: str) -> str:
        if value != "alpha":
            raise invalid(f"dag_alpha runs the alpha phase only, not {value!r}; beta and "
                             f"gamma callbacks run in callback_engine (its /process takes "
                             f"`callbacks`)")
        return value

    @field_validator("execution_mode")
    @classmethod
    def _deterministic(cls, value: str) -> str:
        if value != "deterministic":
            raise invalid(f"only 'deterministic' (the alpha phase always is), not "
                             f"{value!r}")
        return value


class DagRequest(BaseModel):
    """The old DAG request: run the alpha phase over the project-graph nodes named."""

    model_config = ConfigDict(extra="forbid")

    dag_id: str | None = Field(None, max_length=128, description="echoed back")
    input_data: dict[str, Any] = Field(
        default_factory=dict, description="the client's own counts (components_count, "
                                          "total_volume...): not used")
    node_sequence: list[str] = Field(
        default_factory=list, description="nodes of the project graph (the sample project "
                                          "V01-V10) to run; empty: all of it")
    callback_type: str = Field("dag", description="must be dag")
    parameters: DagParameters = Field(default_factory=DagParameters)

    @field_validator("callback_type")
    @classmethod
    def _dag(cls, value: str) -> str:
        if value != "dag":
            raise invalid(f"dag_alpha runs dag callbacks only, not {value!r}; relational "
                             f"and combinatorial callbacks go to callback_engine's /process "
                             f"(`callbacks`)")
        return value


def induced(graph: dict[str, Any], sequence: list[str]) -> dict[str, Any]:
    """The part of a plain graph the sequence names (all of it when empty)."""
    ids = {n["id"] for n in graph["nodes"]}
    for j, node in enumerate(sequence):
        if node not in ids:
            raise ValidationFailed(
                f"data.node_sequence[{j}]: {node!r} is not a node of the project graph (the "
                f"sample project: {', '.join(sorted(ids))}); to run another graph send it as "
                f"data.graph (the body of POST /run)", field=f"data.node_sequence[{j}]")
    keep = set(sequence) or ids
    return {"name": graph.get("name"),
            "nodes": [n for n in graph["nodes"] if n["id"] in keep],
            "edges": [e for e in graph["edges"] if e["source"] in keep and e["target"] in keep],
            "agent_coefficients": {k: v for k, v in graph["agent_coefficients"].items()
                                   if k in keep}}


def component_nodes(picked: list[tuple[int, OldComponent]], defaults: dict[str, Any]
                    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(alpha nodes, {node id: the defaults it was given})."""
    nodes, assumed = [], {}
    for _, component in picked:
        attrs = component.attrs()
        given = {a: defaults[a] for a in FUNCTORS[FUNCTOR].attrs.values()
                 if a not in attrs and a in defaults}
        if given:
            assumed[component.key] = given
        nodes.append({"id": component.key, "phase": "alpha", "functor": FUNCTOR,
                      "functor_type": FUNCTOR_TYPE, "callback": "dag",
                      "attrs": {**attrs, **given}})
    return nodes, assumed


def answer(run: Any, **extra: Any) -> dict[str, Any]:
    results = run.model_dump(mode="json")
    return {**extra, "dag_execution_status": "completed",
            "nodes_processed": len(results["nodes"]), **results}


def _to_components(picked: list[tuple[int, OldComponent]]) -> Callable[[str], str]:
    def rename(field: str) -> str:
        match = _NODE_FIELD.match(field)
        if match is None:
            return "data.components" if field.startswith("graph") else field
        return f"data.components[{picked[int(match.group(1))][0]}]" + field[match.end():]
    return rename


async def serve_dag_request(old: DagRequest, ctx: ServiceContext, _key: str, *, run: Run
                            ) -> dict[str, Any]:
    # a peer: imported on the first call, not at start-up
    from bem.services.graph_runtime.api import sample
    project = await ctx.call(sample)
    graph = induced(project.model_dump(mode="json"), old.node_sequence)
    return answer(await ctx.call(run, {"graph": graph}), dag_id=old.dag_id)


async def serve_components(old: OldComponents, ctx: ServiceContext, _key: str, *, run: Run
                           ) -> dict[str, Any]:
    # a peer: imported on the first call, not at start-up
    from bem.services.functor_types.api import get_type
    picked = old.selected()
    detail = await ctx.call(get_type, name=FUNCTOR_TYPE)
    props = detail.attributes.get("properties", {})
    defaults = {name: p["default"] for name, p in props.items() if "default" in p}
    nodes, assumed = component_nodes(picked, defaults)
    try:
        result = await ctx.call(run, {"graph": {"nodes": nodes}})
    except (ValidationFailed, PayloadTooLarge) as exc:  # about a node: name its component
        raise readdress(exc, _to_components(picked)) from None
    return answer(result, assumed=assumed)


def payloads(run: Run) -> tuple[OldPayload, ...]:
    """The old payloads, served by the service's own `run` (handed in by the API module,
    which imports this one)."""
    return (OldPayload("dag_request", DagRequest, partial(serve_dag_request, run=run)),
            OldPayload("components", OldComponents, partial(serve_components, run=run)))
