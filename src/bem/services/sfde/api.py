"""sfde (5003): named engineering formulas and safe expressions, vectorised with NumPy.

Formulas run inline on the event loop, never in the compute pool: a closed-form formula
over a million rows is a few NumPy passes (milliseconds), less than pickling the columns to
a worker and back would cost. The heaviest, `irr_annuity`, iterates about ten times
(~2 s per million rows); the 10 MB body limit keeps an HTTP request far below that. Only
`POST /affinity` plans in plain Python (~25 us per component and type): beyond
INLINE_BUDGET_MS it runs in the pool of the process, when it has one.

The catalogue (NumPy) and the affinity planning are imported when an operation runs or
/openapi.json is first asked for, never at start-up, nor by a process that merely calls
sfde remotely (the gateway).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import FastAPI

from bem.errors import NotFound, PayloadTooLarge
from bem.runtime.runtime import Ctx, ServiceContext
from bem.runtime.service import ServiceSpec
from bem.services.sfde import legacy
from bem.services.sfde.models import (
    AffinityRequest,
    AffinityResult,
    EvaluateRequest,
    EvaluateResult,
    ExpressionRequest,
    ExpressionResult,
    FormulaInfo,
    FormulaList,
)

FORMULAS = "bem.services.sfde.formulas"
EXPRESSIONS = "bem.services.sfde.expressions"
AFFINITY = "bem.services.sfde.affinity"

service = ServiceSpec(
    name="sfde",
    title="BEM formula engine (SFDE)",
    description=(
        "A catalogue of named engineering formulas (LRFD load combinations, beams, Euler "
        "buckling, section properties, bending stress, HVAC load, material and labour cost, "
        "PERT duration, NPV / IRR / ROI, and the project-defined indices of the alpha "
        "phase), each with parameters, units, bounds and its source; evaluated for one row "
        "(`params`) or for whole columns at once with NumPy (`columns`). Plus safe "
        "expressions over variables: a whitelist AST evaluator in float64 (never `eval`), "
        "bounded in length, size, depth and exponent growth. And the old platform's affinity "
        "types (structural, cost, ...: its design domains), each a recipe of formulas fed "
        "by a component's quantities (`POST /affinity`). See docs/formulas.md."),
    compute_modules=(FORMULAS, EXPRESSIONS, AFFINITY),
    legacy_operation="evaluate",
    legacy_payloads=legacy.PAYLOADS,
)


@cache
def _catalogue() -> dict[str, FormulaInfo]:
    from bem.services.sfde.formulas import CATALOGUE

    return {name: FormulaInfo.model_validate(f.info()) for name, f in CATALOGUE.items()}


@service.setup
def _document_catalogue(app: FastAPI, _ctx: ServiceContext) -> None:
    """List the formulas and affinity types in the OpenAPI description (/docs), written when
    the document is first asked for: the catalogue imports NumPy, which a process need not
    load before its first formula (FastAPI's documented way to extend its OpenAPI)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.description = "\n".join([app.description, *_formula_lines(),
                                         *_affinity_lines()])
        return build()

    app.openapi = openapi  # type: ignore[method-assign]


def _formula_lines() -> list[str]:
    lines = ["", "## Formulas", ""]
    for info in _catalogue().values():
        params = ", ".join(f"`{p.name}` [{p.unit}]" for p in info.parameters)
        lines.append(f"- **`{info.name}`** ({info.domain}) — {info.title}. {info.description} "
                     f"Parameters: {params}. Source: {info.reference}.")
    return lines


def _affinity_lines() -> list[str]:
    """What each affinity type evaluates, and the quantities' names."""
    from bem.services.sfde import affinity

    lines = ["", "## Affinity types (`POST /affinity`)", ""]
    for kind, steps in affinity.RECIPES.items():
        lines.append(f"- **{kind}**: " + "; ".join(
            f"`{s.formula}`" + "".join(f", {p} = {q}" for p, q in s.quantities.items())
            for s in steps))
    lines += ["", "Quantities, by their names in `parameters` or `attributes`: " + "; ".join(
        f"{q}: {' or '.join(n for n, _ in names)}" for q, names in affinity.SOURCES.items())
        + ". Derived: " + "; ".join(f"{q}: {d.description}"
                                    for q, d in affinity.DERIVED.items()) + "."]
    return lines


@service.operation("GET", "/formulas")
async def list_formulas(ctx: Ctx) -> FormulaList:
    """Every formula: parameters (unit, bounds, default), outputs, equation and source."""
    return FormulaList(formulas=list(_catalogue().values()))


@service.operation("GET", "/formulas/{name}")
async def get_formula(name: str, ctx: Ctx) -> FormulaInfo:
    """One formula by name."""
    info = _catalogue().get(name)
    if info is None:
        raise NotFound(f"name: no formula {name!r}; known formulas: "
                       f"{', '.join(_catalogue())}", field="name")
    return info


@service.operation("POST", "/evaluate", idempotent=True)
async def evaluate(body: EvaluateRequest, ctx: Ctx) -> EvaluateResult:
    """Evaluate a formula for one row (`params`) or for equal-length `columns`."""
    from bem.services.sfde.formulas import lookup

    formula = lookup(body.formula)
    if body.params is not None:
        outputs = formula.evaluate(body.params, prefix="params", indexed=False)
        return EvaluateResult(formula=formula.name, rows=None,
                              outputs={k: float(v[0]) for k, v in outputs.items()})
    columns = body.columns or {}
    limit = ctx.settings.max_columns_rows
    for name, values in sorted(columns.items()):
        if len(values) > limit:
            raise PayloadTooLarge(f"columns.{name}: {len(values)} rows exceed the limit of "
                                  f"{limit} (MAX_COLUMNS_ROWS)", field=f"columns.{name}")
    outputs = formula.evaluate(columns, prefix="columns", indexed=True)
    rows = len(next(iter(outputs.values())))
    return EvaluateResult(formula=formula.name, rows=rows,
                          outputs={k: v.tolist() for k, v in outputs.items()})


@service.operation("POST", "/affinity", idempotent=True)
async def evaluate_affinity(body: AffinityRequest, ctx: Ctx) -> AffinityResult:
    """Evaluate the formulas of each affinity type for each component.

    Each type is a recipe of catalogue formulas (listed in the service description). A
    parameter is read from `parameters` (under its quantity's names, e.g. `length_mm` for
    a span, else its catalogue name), then from `attributes` the same way, else derived
    (the self weight from density and volume) or its default; a formula still lacking one
    is not evaluated and `missing` says what to send. Each formula is evaluated once, as
    NumPy columns over every component that needs it: its outputs are POST /evaluate's
    for the `params` answered. A value out of a formula's bounds is a 422 naming the
    field it came from.
    """
    from bem.services.sfde.affinity import run

    return await run(body, ctx)


@service.operation("POST", "/expressions", idempotent=True)
async def evaluate_expression(body: ExpressionRequest, ctx: Ctx) -> ExpressionResult:
    """Evaluate a safe arithmetic expression, element-wise over array variables."""
    from bem.services.sfde.expressions import evaluate_expression as run

    result = run(body.expression, body.variables,
                 max_length=ctx.settings.max_expression_length,
                 max_rows=ctx.settings.max_columns_rows)
    if isinstance(result, float):
        return ExpressionResult(value=result, values=None)
    return ExpressionResult(value=None, values=result.tolist())
