"""sfde's old `/process` payloads: catalogue formulas evaluated per affinity type, for real.

- `sfde_requests` (neon/json_transformer.py `transform_for_sfde_engine`, the old GraphQL
  server's executeDataAffinity): `{sfde_requests[{component_id, affinity_type,
  input_parameters, formula_context}], affinity_types, execution_mode}`.
- `components` (bem.models.legacy; the old GraphQL server's analyzeComponent): one request
  per component and affinity type (default: structural, cost, energy, the old service's),
  its input parameters the component's scalars.

An affinity type stands for catalogue domains (AFFINITY_DOMAINS). Each formula of those
domains is evaluated for every request of the type whose `input_parameters` give all the
formula's parameters without a default, by their catalogue names (`w`, `L`, `U`...) or the
old names ALIASES converts; the rest are listed as not executed with what is missing. Each
(type, formula) is one vectorised `POST /evaluate` over all its requests. The answer is the
old `results.calculations.<type>` (plus `total_cost` for cost) and `results.formulas_executed`.
`formula_context` and `execution_mode` are accepted and not used: every formula is numeric.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bem.errors import ValidationFailed
from bem.models.legacy import OldComponents, invalid
from bem.runtime.legacy import readdress
from bem.runtime.service import OldPayload, ServiceContext

AFFINITY_DOMAINS: dict[str, tuple[str, ...]] = {
    "structural": ("structural",),
    "cost": ("cost",),
    "energy": ("energy",),
    "mep": ("energy",),  # HVAC is the mechanical services' part; the catalogue has no E or P
    "time": ("time",),
    "fabrication": ("fabrication",),
    "spatial": ("site",),
}
DEFAULT_TYPES = ("structural", "cost", "energy")  # what the old sfde assumed without any
# catalogue parameter <- (old input name, factor to the parameter's unit)
ALIASES: dict[str, tuple[str, float]] = {"L": ("length_mm", 1e-3), "b": ("width_mm", 1.0),
                                         "h": ("height_mm", 1.0)}
_COLUMN = re.compile(r"^columns(?:\.(\w+))?\[(\d+)\]")


def _known_type(value: str) -> str:
    if value not in AFFINITY_DOMAINS:
        raise invalid(f"unknown affinity type {value!r}; known: "
                         f"{', '.join(AFFINITY_DOMAINS)}")
    return value


class SfdeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    component_id: str | None = Field(None, max_length=128)
    affinity_type: str = Field(description=f"one of {', '.join(AFFINITY_DOMAINS)}")
    input_parameters: dict[str, Any] = Field(
        default_factory=dict, description="formula parameters by catalogue name (w, L, U, "
                                          "...) or as length_mm, width_mm, height_mm")
    formula_context: dict[str, Any] = Field(default_factory=dict, description="not used")

    @field_validator("affinity_type")
    @classmethod
    def _known(cls, value: str) -> str:
        return _known_type(value)


class SfdeRequests(BaseModel):
    """The old formula request: catalogue formulas per component and affinity type."""

    model_config = ConfigDict(extra="forbid")

    sfde_requests: list[SfdeRequest]
    affinity_types: list[str] | None = Field(
        None, description="types to answer (default: those of the requests)")
    execution_mode: str | None = Field(None, max_length=64, description="not used")

    @field_validator("affinity_types")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            _known_type(item)
        return value


@dataclass
class Batch:
    """The requests one formula is evaluated for, as sfde `columns`."""

    affinity: str
    formula: str
    requests: list[int] = field(default_factory=list)  # index of the request, per row
    columns: dict[str, list[float]] = field(default_factory=dict)
    sources: list[dict[str, str]] = field(default_factory=list)  # per row: param -> input


def _number(value: Any, where: str) -> float:
    number = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float64
            number = None
    if number is None or not math.isfinite(number):
        raise ValidationFailed(f"{where}: must be a finite number, got {str(value)[:40]!r}",
                               field=where)
    return number


def resolve(formula: Any, inputs: dict[str, Any], where: str
            ) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """(value per parameter, the input each came from, parameters missing) of one request."""
    values, sources, missing = {}, {}, []
    for p in formula.parameters:
        alias = ALIASES.get(p.name)
        if p.name in inputs:
            values[p.name] = _number(inputs[p.name], f"{where}.{p.name}")
            sources[p.name] = p.name
        elif alias is not None and alias[0] in inputs:
            values[p.name] = _number(inputs[alias[0]], f"{where}.{alias[0]}") * alias[1]
            sources[p.name] = alias[0]
        elif p.default is not None:
            values[p.name] = p.default
        else:
            missing.append(p.name)
    return values, sources, missing


Place = Callable[[int], str]  # request index -> where its inputs are in the old payload


def plan(requests: list[SfdeRequest], types: list[str], catalogue: Any, place: Place
         ) -> tuple[list[Batch], dict[str, list[dict[str, Any]]]]:
    """The batches to evaluate and, per type, what could not be (with what is missing)."""
    batches: list[Batch] = []
    skipped: dict[str, list[dict[str, Any]]] = {t: [] for t in types}
    for affinity in types:
        formulas = [f for f in catalogue.formulas if f.domain in AFFINITY_DOMAINS[affinity]]
        for formula in formulas:
            batch = Batch(affinity, formula.name)
            for i, request in enumerate(requests):
                if request.affinity_type != affinity:
                    continue
                values, sources, missing = resolve(formula, request.input_parameters, place(i))
                if missing:
                    skipped[affinity].append({"component_id": request.component_id,
                                              "formula": formula.name, "missing": missing})
                    continue
                batch.requests.append(i)
                for name, value in values.items():
                    batch.columns.setdefault(name, []).append(value)
                batch.sources.append(sources)
            if batch.requests:
                batches.append(batch)
    return batches, skipped


def _rename(batch: Batch, place: Place) -> Callable[[str], str]:
    """sfde's `columns.<param>[row]` -> the old input of the request that row came from."""
    def rename(name: str) -> str:
        match = _COLUMN.match(name)
        if match is None:
            return name
        row = int(match.group(2))
        param = match.group(1)
        where = place(batch.requests[row])
        return f"{where}.{batch.sources[row].get(param, param)}" if param else where
    return rename


def answer(requests: list[SfdeRequest], types: list[str], batches: list[Batch],
           outputs: list[dict[str, list[float]]], skipped: dict[str, list[dict[str, Any]]]
           ) -> dict[str, Any]:
    calculations: dict[str, dict[str, Any]] = {
        t: {"domains": list(AFFINITY_DOMAINS[t]), "results": [], "not_executed": skipped[t]}
        for t in types}
    for batch, out in zip(batches, outputs, strict=True):
        rows = calculations[batch.affinity]["results"]
        for row, i in enumerate(batch.requests):
            rows.append({"component_id": requests[i].component_id, "formula": batch.formula,
                         "inputs": {k: v[row] for k, v in batch.columns.items()},
                         "outputs": {k: v[row] for k, v in out.items()}})
    for t, calc in calculations.items():
        calc["formulas_executed"] = len(calc["results"])
        if t == "cost":  # what the old clients read: null when no cost could be computed
            costs = [r["outputs"]["cost"] for r in calc["results"]]
            calc["total_cost"] = sum(costs) if costs else None
    return {"sfde_execution_status": "completed", "affinity_types": types,
            "formulas_executed": sum(c["formulas_executed"] for c in calculations.values()),
            "calculations": calculations}


async def _evaluate(ctx: ServiceContext, batch: Batch, place: Place
                    ) -> dict[str, list[float]]:
    try:
        result = await ctx.call("sfde", "evaluate", {"formula": batch.formula,
                                                     "columns": batch.columns})
    except ValidationFailed as exc:
        raise readdress(exc, _rename(batch, place)) from None
    return result.outputs  # type: ignore[no-any-return]


async def compute(ctx: ServiceContext, requests: list[SfdeRequest], types: list[str],
                  place: Place) -> dict[str, Any]:
    catalogue = await ctx.call("sfde", "list_formulas")
    batches, skipped = plan(requests, types, catalogue, place)
    outputs = await asyncio.gather(*(_evaluate(ctx, b, place) for b in batches))
    return answer(requests, types, batches, list(outputs), skipped)


async def serve_requests(old: SfdeRequests, ctx: ServiceContext, _key: str) -> dict[str, Any]:
    types = list(dict.fromkeys([*(old.affinity_types or ()),
                                *(r.affinity_type for r in old.sfde_requests)]))
    return await compute(ctx, old.sfde_requests, types,
                         lambda i: f"data.sfde_requests[{i}].input_parameters")


async def serve_components(old: OldComponents, ctx: ServiceContext, _key: str
                           ) -> dict[str, Any]:
    types = list(dict.fromkeys(old.affinity_types or DEFAULT_TYPES))
    for j, t in enumerate(types):
        if t not in AFFINITY_DOMAINS:
            raise ValidationFailed(f"data.affinity_types[{j}]: unknown affinity type {t!r}; "
                                   f"known: {', '.join(AFFINITY_DOMAINS)}",
                                   field=f"data.affinity_types[{j}]")
    picked = old.selected()
    requests = [SfdeRequest(component_id=c.key, affinity_type=t, input_parameters=c.attrs())
                for _, c in picked for t in types]
    return await compute(ctx, requests, types,
                         lambda i: f"data.components[{picked[i // len(types)][0]}]")


PAYLOADS = (
    OldPayload("sfde_requests", SfdeRequests, serve_requests),
    OldPayload("components", OldComponents, serve_components),
)
