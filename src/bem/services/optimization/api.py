"""optimization (5005): option selection (MILP) and parameter optimisation over sfde.

Answers: a solve that yields a usable answer is a 200 whose `status` is `optimal`, or
`time_limit` / `iteration_limit` with the best feasible answer found (`optimal: false`).
One that yields none is a 422 whose `error` code names the outcome (`infeasible`,
`unbounded`, `time_limit`, `iteration_limit`, `solver_failed`) and whose `field` names what
to change. See docs/optimization.md.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

from bem.errors import ValidationFailed
from bem.runtime.runtime import Ctx, ServiceContext
from bem.runtime.service import ServiceSpec
from bem.services.optimization import legacy
from bem.services.optimization.errors import OUTCOME_ERRORS
from bem.services.optimization.models import (
    Chosen,
    ConstraintValue,
    ParameterConstraintValue,
    ParametersRequest,
    ParametersResult,
    SelectRequest,
    SelectResult,
)

SELECTION = "bem.services.optimization.selection"
# HiGHS's run time does not follow from the size (a 200-variable knapsack can take seconds),
# so anything beyond a toy problem goes to the pool and never holds the event loop.
POOL_FROM_VARIABLES = 100
POOL_GRACE = 5.0  # seconds a pool task may run past time_limit (model build, pickling)
ACTIVE = 1e-6
# The request field to change when a parameter solve has no answer.
PARAMETER_FIELDS = {"infeasible": "constraints", "time_limit": "time_limit",
                    "iteration_limit": "max_iterations", "solver_failed": "variables"}

service = ServiceSpec(
    name="optimization",
    title="BEM optimization",
    description=(
        "Option selection: one option per component maximising the weighted score (weights "
        "from agent coefficients or explicit) under a budget and extra linear constraints, "
        "solved exactly as a binary MILP with HiGHS (highspy) in the compute "
        "pool. Parameter optimisation: minimise or maximise an sfde formula output over "
        "bounded variables under constraints that are sfde formula outputs or safe "
        "expressions, with scipy.optimize.minimize (SLSQP); the formulas "
        "are evaluated through the service client, a finite-difference gradient in one "
        "vectorised call. An answer is a 200 with `status` optimal, time_limit or "
        "iteration_limit (best found); no answer is a 422 coded infeasible, unbounded, "
        "time_limit, iteration_limit or solver_failed. See docs/optimization.md."),
    uses_pool=True,
    compute_modules=(SELECTION,),
    legacy_operation="select",
    legacy_payloads=legacy.PAYLOADS,
)


def _check_time_limit(ctx: ServiceContext, time_limit: float) -> None:
    if time_limit > ctx.settings.request_timeout:
        raise ValidationFailed(
            f"time_limit: {time_limit:g} s exceeds REQUEST_TIMEOUT "
            f"({ctx.settings.request_timeout:g} s), after which callers give up",
            field="time_limit")


def _no_answer(status: str, message: str, field: str | None) -> ValidationFailed:
    return OUTCOME_ERRORS[status](f"{field}: {message}" if field else message, field=field)


# --- POST /select -----------------------------------------------------------------------------
@service.operation("POST", "/select", idempotent=True)
async def select(body: SelectRequest, ctx: Ctx) -> SelectResult:
    """Choose one option per component: maximum weighted score under budget and constraints."""
    import numpy as np  # here: a process that only calls optimization never loads NumPy

    from bem.services.optimization.choices import build_selection
    from bem.services.optimization.selection import solve_selection

    _check_time_limit(ctx, body.time_limit)
    problem, layout = build_selection(body, body.time_limit)
    answer = await ctx.runtime.pool.submit(
        solve_selection, problem, size=problem.size, threshold=POOL_FROM_VARIABLES,
        timeout=body.time_limit + POOL_GRACE)
    if answer["chosen"] is None:
        raise _selection_error(answer, body)
    x = np.zeros(problem.size, dtype=bool)
    x[problem.starts + np.array(answer["chosen"])] = True
    selection = [Chosen(component=cid, option=layout.options[i][j], option_index=j,
                        cost=float(problem.costs[problem.starts[i] + j]),
                        score=float(problem.values[problem.starts[i] + j]))
                 for i, (cid, j) in enumerate(zip(layout.components, answer["chosen"],
                                                  strict=True))]
    constraints = [ConstraintValue(name=name, value=float(row.coefficients[x[row.columns]].sum()),
                                   lower=_finite(row.lower), upper=_finite(row.upper))
                   for name, row in zip(layout.constraint_names, problem.rows, strict=True)]
    return SelectResult(
        status=answer["status"], optimal=answer["status"] == "optimal",
        objective=answer["objective"], bound=answer["bound"], mip_gap=answer["gap"],
        total_cost=float(problem.costs[x].sum()), budget=body.budget, selection=selection,
        constraints=constraints, weights=layout.weights, nodes=answer["nodes"],
        solve_seconds=round(answer["seconds"], 6), message=_message(answer, body))


def _message(answer: dict[str, Any], body: SelectRequest) -> str:
    limit = {"time_limit": f"stopped at time_limit ({body.time_limit:g} s)",
             "iteration_limit": f"stopped at max_nodes ({body.max_nodes})"}.get(answer["status"])
    if limit is None:
        return str(answer["message"])
    gap = "unknown" if answer["gap"] is None else f"{answer['gap']:.3g}"
    return f"{limit}: the best selection found, relative gap to the bound {gap}"


def _selection_error(answer: dict[str, Any], body: SelectRequest) -> ValidationFailed:
    status = answer["status"]
    if status == "infeasible":
        which, why = answer["diagnosis"] or (None, "no selection satisfies the budget and the "
                                                   "constraints together")
        field = "budget" if which == -1 else \
            f"constraints[{which}]" if which is not None else \
            "constraints" if body.constraints else "budget"
        return _no_answer(status, f"infeasible: {why}", field)
    fields = {"time_limit": "time_limit", "iteration_limit": "max_nodes"}
    what = {"time_limit": f"no feasible selection found within {body.time_limit:g} s",
            "iteration_limit": f"no feasible selection found within {body.max_nodes} "
                               f"branch-and-bound nodes"}
    return _no_answer(status, what.get(status, f"the solver stopped: {answer['message']}"),
                      fields.get(status))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# --- POST /parameters -------------------------------------------------------------------------
@service.operation("POST", "/parameters", idempotent=True)
async def parameters(body: ParametersRequest, ctx: Ctx) -> ParametersResult:
    """Minimise or maximise an sfde formula output over bounded variables, with constraints."""
    from bem.services.optimization.parameters import solve
    from bem.services.optimization.sfde_problem import SfdeBatch, blocking, compile_problem

    # a peer: imported on the first call, not at start-up
    from bem.services.sfde.api import evaluate

    _check_time_limit(ctx, body.time_limit)
    spec = await compile_problem(ctx, body)
    batch = SfdeBatch(ctx, spec)
    start = time.monotonic()
    await batch.evaluate(spec.initial[None, :])  # sfde judges every input once, up front
    run = blocking(batch, asyncio.get_running_loop(), start + body.time_limit)
    stop = threading.Event()
    try:
        outcome = await asyncio.to_thread(solve, spec.problem(body), run, stop=stop)
    except asyncio.CancelledError:
        stop.set()  # the caller went away: the solver's next evaluation ends it
        raise
    if outcome.x is None:
        raise _no_answer(outcome.status, outcome.message, PARAMETER_FIELDS[outcome.status])
    answer = dict(zip(spec.names, (float(v) for v in outcome.x), strict=True))
    params = {**{p: spec.fixed[p] for p in spec.parameters[body.formula] if p in spec.fixed},
              **answer}
    batch.calls += 1
    final = await ctx.call(evaluate, {"formula": body.formula, "params": params})
    return ParametersResult(
        status=outcome.status, optimal=outcome.status == "optimal", formula=body.formula,
        output=body.output, sense=body.sense, objective=float(final.outputs[body.output]),
        variables=answer, outputs=dict(final.outputs),
        constraints=_constraint_values(spec, body, outcome.constraints),
        iterations=outcome.iterations, evaluations=outcome.evaluations,
        sfde_calls=batch.calls, solve_seconds=round(time.monotonic() - start, 6),
        message=outcome.message)


def _constraint_values(spec: Any, body: ParametersRequest, values: Any
                       ) -> list[ParameterConstraintValue]:
    out = []
    for term, c, value in zip(spec.constraints, body.constraints, values, strict=True):
        active = any(b is not None and abs(value - b) <= ACTIVE * max(1.0, abs(b))
                     for b in (c.lower, c.upper))
        out.append(ParameterConstraintValue(constraint=term.label, value=float(value),
                                            lower=c.lower, upper=c.upper, active=active))
    return out
