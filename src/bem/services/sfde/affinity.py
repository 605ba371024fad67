"""Affinity types: the old platform's design domains, evaluated as catalogue formulas.

An affinity type (structural, cost, energy, mep, spatial, time, fabrication) is a recipe: a
fixed list of formulas (RECIPES) whose parameters are either read by their catalogue names
or stand for a quantity of the component (its length, volume, self weight...). Each
parameter of a formula is taken, in order:

1. from the request's `parameters`: under the names of its quantity (SOURCES, converted to
   the parameter's unit: `length_mm` x 0.001 for a span in m), else under its catalogue
   name (`w`, `unit_price`);
2. from the component's `attributes`, the same way;
3. for a derived quantity (DERIVED: the self weight from density x volume x g), computed
   from its inputs, each found as above;
4. its default.

A formula still lacking a parameter is not evaluated, and the answer says what to send.
Everything a component needs is planned first (pure Python over plain data); then each
formula is evaluated once for every row that needs it, a NumPy column each (the sfde
catalogue's `Formula.evaluate`: the very code of `POST /evaluate`), so its outputs equal
POST /evaluate's for the same params. Served by sfde's `POST /affinity` and used by sfde's
old `POST /process` payloads; the gateway's old GraphQL fields call it through the service
client.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from bem.errors import BemError, ValidationFailed
from bem.runtime.legacy import readdress
from bem.services.sfde.models import (
    AffinityComponentResult,
    AffinityEvaluation,
    AffinityRequest,
    AffinityResult,
    FormulaEvaluation,
    finite_number,
)

if TYPE_CHECKING:
    from bem.runtime.runtime import ServiceContext
    from bem.services.sfde.engine import Formula

G = 9.80665  # m/s^2, standard gravity: the weight of a mass
# Planning and answering one (component, affinity type), measured ~25 us: at the default
# INLINE_BUDGET_MS (2 ms), a request of more than ~80 goes to the pool.
COST_PER_TYPE_US = 25

# Quantity (in the unit of the parameters it feeds) -> its names, in order, with the factor
# from each name's unit.
SOURCES: dict[str, tuple[tuple[str, float], ...]] = {
    "density": (("density", 1.0), ("component_density", 1.0)),  # kg/m^3
    "volume": (("volume_m3", 1.0), ("volume_cm3", 1e-6)),  # m^3
    "length": (("length_m", 1.0), ("length_mm", 1e-3)),  # m
    "width": (("width_m", 1.0), ("width_mm", 1e-3)),  # m
    "height": (("height_m", 1.0), ("height_mm", 1e-3)),  # m
    "area": (("area_m2", 1.0),),  # m^2
    "buildability": (("buildability", 1.0), ("buildability_score", 1.0)),  # 0..1
}


@dataclass(frozen=True)
class Derived:
    inputs: tuple[str, ...]
    fn: Callable[..., float | None]  # None: undefined for these values (a zero length)
    description: str


DERIVED: dict[str, Derived] = {
    "self_weight": Derived(("density", "volume"), lambda d, v: d * v * G / 1000,
                           "the component's own weight as a dead load, kN: "
                           "density x volume x g / 1000"),
    "self_weight_per_length": Derived(
        ("density", "volume", "length"),
        lambda d, v, span: d * v * G / 1000 / span if span else None,
        "the self weight spread along the component's length, kN/m"),
}


@dataclass(frozen=True)
class Step:
    """A formula of a recipe; `quantities`: parameter -> the quantity it stands for."""

    formula: str
    quantities: Mapping[str, str] = field(default_factory=dict)


RECIPES: dict[str, tuple[Step, ...]] = {
    # The member loaded by its own weight: the factored load, then the beam it spans.
    "structural": (Step("lrfd_combinations", {"D": "self_weight"}),
                   Step("simple_beam_udl", {"w": "self_weight_per_length", "L": "length"})),
    "cost": (Step("material_cost", {"quantity": "volume"}), Step("labour_cost")),
    "energy": (Step("hvac_load", {"A": "area"}),),
    "mep": (Step("hvac_load", {"A": "area"}),),  # the mechanical load; no E or P formula
    "spatial": (Step("prism_geometry", {"length": "length", "width": "width",
                                        "height": "height", "density": "density"}),),
    "time": (Step("pert_duration"),),
    "fabrication": (Step("manufacturing_score", {"density": "density",
                                                 "buildability": "buildability"}),),
}


# --- planning: which values, from where --------------------------------------------------
@dataclass(frozen=True, slots=True)
class Value:
    value: float
    source: str  # `parameters.length_mm x 0.001`, `default`, `self_weight(...)`
    fields: tuple[str, ...]  # the body's fields it was read from, for errors


Names = tuple[tuple[str, float], ...]


@dataclass
class Inputs:
    """One component's two sources of values; `where`: its place in the body."""

    where: str
    parameters: Mapping[str, float]
    attributes: Mapping[str, Any]
    found: dict[Names | str, Value | None] = field(default_factory=dict)  # memo: the
    # affinity types of a component look up the same quantities


def _finite(value: Any, where: str) -> float:
    number = finite_number(value)
    if number is None:
        raise ValidationFailed(f"{where}: must be a finite number, got {str(value)[:40]!r}",
                               field=where)
    return number


def _named(names: Names, inputs: Inputs) -> Value | None:
    """The first of `names` given: in the parameters, then in the attributes."""
    if names in inputs.found:
        return inputs.found[names]
    value = None
    for origin, values in (("parameters", inputs.parameters),
                           ("attributes", inputs.attributes)):
        hit = next((n for n in names if n[0] in values), None)
        if hit is not None:
            name, factor = hit
            where = f"{inputs.where}.{origin}.{name}"
            source = f"{origin}.{name}" + (f" x {factor:g}" if factor != 1 else "")
            value = Value(_finite(values[name], where) * factor, source, (where,))
            break
    inputs.found[names] = value
    return value


def _quantity(name: str, inputs: Inputs) -> Value | None:
    """A quantity of the component, found or derived; None when it cannot be."""
    derived = DERIVED.get(name)
    if derived is None:
        return _named(SOURCES[name], inputs)
    if name in inputs.found:
        return inputs.found[name]
    values = [_quantity(i, inputs) for i in derived.inputs]
    found = [v for v in values if v is not None]
    result = derived.fn(*(v.value for v in found)) if len(found) == len(values) else None
    inputs.found[name] = value = None if result is None else Value(
        result, f"{name}({', '.join(v.source for v in found)})",
        tuple(f for v in found for f in v.fields))
    return value


@dataclass(frozen=True, slots=True)
class _Lookup:
    """How one parameter of a recipe's formula is found."""

    parameter: str
    quantity: str | None  # what the recipe says it stands for
    names: Names  # the quantity's names, then the parameter's own
    default: float | None


@cache
def _recipe(affinity: str) -> tuple[tuple[str, tuple[_Lookup, ...]], ...]:
    """RECIPES[affinity] against the catalogue: per formula, how each parameter is found."""
    from bem.services.sfde.formulas import CATALOGUE

    out = []
    for step in RECIPES[affinity]:
        lookups = []
        for p in CATALOGUE[step.formula].parameters:
            q = step.quantities.get(p.name)
            lookups.append(_Lookup(p.name, q, (*SOURCES.get(q or "", ()), (p.name, 1.0)),
                                   p.default))
        out.append((step.formula, tuple(lookups)))
    return tuple(out)


def _parameter(lookup: _Lookup, inputs: Inputs) -> Value | None:
    found = _named(lookup.names, inputs)
    if found is None and lookup.quantity in DERIVED:
        found = _quantity(lookup.quantity, inputs)
    if found is None and lookup.default is not None:
        found = Value(lookup.default, "default", ())
    return found


def _wanted(q: str, inputs: Inputs) -> list[str]:
    """What a client sends to supply quantity `q`, which cannot be found."""
    if q not in DERIVED:
        return [" or ".join(name for name, _ in SOURCES[q])]
    parts = [w for i in DERIVED[q].inputs if _quantity(i, inputs) is None
             for w in _wanted(i, inputs)]
    return parts or [f"{q} (undefined for the values given, e.g. a zero length)"]


@dataclass
class Planned:
    """One formula to evaluate for one (component, affinity type)."""

    where: str
    affinity: str
    formula: str
    values: dict[str, Value]
    outputs: dict[str, float] = field(default_factory=dict)  # once evaluated


@dataclass
class Plan:
    """What one affinity type of one component evaluates, and what it cannot."""

    evaluations: list[Planned] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)


def plan(affinity: str, inputs: Inputs) -> Plan:
    out = Plan()
    for formula, lookups in _recipe(affinity):
        values: dict[str, Value] = {}
        missing: list[str] = []
        for lookup in lookups:
            value = _parameter(lookup, inputs)
            if value is not None:
                values[lookup.parameter] = value
                continue
            q = lookup.quantity
            missing.extend(w for w in (_wanted(q, inputs) if q else [lookup.parameter])
                           if w not in missing)
        if missing:
            out.missing[formula] = missing
        else:
            out.evaluations.append(Planned(inputs.where, affinity, formula, values))
    return out


# --- evaluation: one NumPy pass per formula ----------------------------------------------
_COLUMN = re.compile(r"^columns(?:\.(\w+))?\[(\d+)\]$")
_ROWS = re.compile(r"\((\d+) rows affected\)")  # the engine's word for the columns' rows
_ORIGIN = re.compile(r"\b(?:parameters|attributes)\.")


def _blame(rows: list[Planned], exc: ValidationFailed) -> BemError:
    """The engine's `columns.<param>[row]` as the body's field the value came from."""
    def rename(name: str) -> str:
        match = _COLUMN.match(name)
        if match is None:
            return name
        row = rows[int(match.group(2))]
        value = row.values.get(match.group(1) or "")
        return value.fields[0] if value is not None and value.fields else row.where

    for detail in exc.details:
        match = _COLUMN.match(str(detail.get("field", "")))
        if match and match.group(1):
            row = rows[int(match.group(2))]
            value = row.values[match.group(1)]
            message = _ROWS.sub(r"(\1 evaluations affected)", detail["message"])
            if not value.fields or not value.fields[0].endswith(value.source):
                # converted or derived: not the value the client wrote; say how, in names
                # that hold whatever the fields are called (old payloads rename them)
                message += (f" ({row.affinity} {row.formula} {match.group(1)} = "
                            f"{_ORIGIN.sub('', value.source)})")
            detail["message"] = message
    return readdress(exc, rename)


def _evaluate(formula: Formula, rows: list[Planned]) -> None:
    """Every row's outputs, in one vectorised evaluation."""
    columns = {p.name: [row.values[p.name].value for row in rows] for p in formula.parameters}
    try:
        outputs = formula.evaluate(columns)
    except ValidationFailed as exc:
        raise _blame(rows, exc) from None
    lists = {name: arr.tolist() for name, arr in outputs.items()}
    for i, row in enumerate(rows):
        row.outputs = {name: values[i] for name, values in lists.items()}


def _status(p: Plan) -> str:
    if not p.evaluations:
        return "missing_parameters"
    return "partial" if p.missing else "completed"


def _answer(p: Plan) -> AffinityEvaluation:
    # model_construct: the values are this module's own, already checked (a third of the
    # time of a big request went into re-validating them)
    formulas = {e.formula: FormulaEvaluation.model_construct(
        params={k: v.value for k, v in e.values.items()},
        sources={k: v.source for k, v in e.values.items()}, outputs=e.outputs)
        for e in p.evaluations}
    costs = [e.outputs["cost"] for e in p.evaluations if "cost" in e.outputs]
    return AffinityEvaluation.model_construct(
        status=_status(p), formulas=formulas, missing=p.missing,
        formulas_executed=len(formulas), cost=sum(costs) if costs else None)


def evaluate(body: AffinityRequest) -> AffinityResult:
    """Plan every (component, affinity type), then evaluate each formula once over all the
    rows that need it. Pure: runs inline or in a pool worker."""
    from bem.services.sfde.formulas import CATALOGUE

    inputs = [Inputs(f"requests[{i}]", r.parameters, r.attributes)
              for i, r in enumerate(body.requests)]
    plans = [{t: plan(t, i) for t in r.affinity_types}
             for r, i in zip(body.requests, inputs, strict=True)]
    rows: dict[str, list[Planned]] = {}
    for e in (e for by_type in plans for p in by_type.values() for e in p.evaluations):
        rows.setdefault(e.formula, []).append(e)
    for name, planned in rows.items():
        _evaluate(CATALOGUE[name], planned)
    results = [AffinityComponentResult.model_construct(
        component_id=r.component_id, affinity={t: _answer(p) for t, p in by_type.items()})
        for r, by_type in zip(body.requests, plans, strict=True)]
    return AffinityResult.model_construct(results=results, formulas_executed=sum(
        len(e.formulas) for r in results for e in r.affinity.values()))


async def run(body: AffinityRequest, ctx: ServiceContext) -> AffinityResult:
    """`evaluate`, inline when its estimate is within INLINE_BUDGET_MS, else in the compute
    pool of the process (if it has one: sfde alone, in `sprawl`, has none)."""
    pairs = sum(len(r.affinity_types) for r in body.requests)
    return await ctx.runtime.pool.submit(  # type: ignore[no-any-return]
        evaluate, body, size=round(pairs * COST_PER_TYPE_US),
        threshold=round(ctx.settings.inline_budget_ms * 1000))
