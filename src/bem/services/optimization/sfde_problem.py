"""A /parameters request as a problem over sfde: checked against the catalogue, evaluated
through the service client, in batches, from the solver's thread.

`compile_problem` asks sfde for every formula involved (`get_formula`) and checks names,
bounds and which value each formula parameter takes (a variable, a fixed value, or the
formula's default). `SfdeBatch.evaluate(X)` evaluates the objective and every constraint at
all rows of X with one sfde call per distinct formula (`columns`) and one per expression
(array `variables`), concurrently. `blocking(...)` is what the solver's thread calls: it
runs the batch on the event loop (asyncio.run_coroutine_threadsafe) and waits, bounded by
the time limit. Either way sfde may be in this process or remote: `ctx.call` decides.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bem.errors import BemError, NotFound
from bem.runtime.runtime import ServiceContext
from bem.services.optimization.errors import Problems
from bem.services.optimization.models import ParametersRequest
from bem.services.optimization.parameters import LimitReached, Problem
from bem.services.sfde.api import evaluate, evaluate_expression, get_formula


@dataclass(frozen=True)
class Term:
    """The objective or one constraint: where its value comes from and its error field."""

    where: str  # field to blame, e.g. constraints[1].expression
    label: str  # formula.output, or the expression
    formula: str | None = None
    output: str | None = None
    expression: str | None = None
    names: tuple[str, ...] = ()  # expression: the names it uses that have values here


@dataclass(frozen=True)
class Spec:
    names: list[str]  # the variables, in order
    lower: np.ndarray
    upper: np.ndarray
    initial: np.ndarray
    fixed: dict[str, float]
    parameters: dict[str, list[str]]  # formula -> its parameter names
    objective: Term
    constraints: list[Term]
    con_lower: np.ndarray
    con_upper: np.ndarray

    def problem(self, body: ParametersRequest) -> Problem:
        return Problem(lower=self.lower, upper=self.upper, initial=self.initial,
                       maximize=body.sense == "maximize", con_lower=self.con_lower,
                       con_upper=self.con_upper, max_iterations=body.max_iterations,
                       tolerance=body.tolerance, time_limit=body.time_limit)


async def compile_problem(ctx: ServiceContext, body: ParametersRequest) -> Spec:
    wanted = {"formula": body.formula}
    for k, c in enumerate(body.constraints):
        if c.formula is not None:
            wanted.setdefault(f"constraints[{k}].formula", c.formula)
    infos = await _formulas(ctx, wanted)
    problems = Problems()
    main = infos[body.formula]
    objective = Term("formula", f"{body.formula}.{body.output}", body.formula, body.output)
    _check_output(main, body.output, "output", problems)
    terms = [_constraint_term(k, c, infos, problems) for k, c in enumerate(body.constraints)]
    names, lower, upper, initial = _variables(body, main, problems)
    _check_parameters(body, infos, names, terms, problems)
    problems.raise_any()
    terms = [_with_names(t, {*names, *body.fixed}) for t in terms]
    return Spec(
        names=names, lower=lower, upper=upper, initial=initial, fixed=dict(body.fixed),
        parameters={n: [p.name for p in info.parameters] for n, info in infos.items()},
        objective=objective, constraints=terms,
        con_lower=np.array([-np.inf if c.lower is None else c.lower for c in body.constraints]),
        con_upper=np.array([np.inf if c.upper is None else c.upper for c in body.constraints]))


async def _formulas(ctx: ServiceContext, wanted: dict[str, str]) -> dict[str, Any]:
    """FormulaInfo of each distinct formula; an unknown one is named by its request field."""
    fields = {name: where for where, name in reversed(wanted.items())}  # first mention wins

    async def one(name: str) -> Any:
        try:
            return await ctx.call(get_formula, name=name)
        except NotFound as exc:
            where = fields[name]
            raise NotFound(f"{where}: {exc.message.removeprefix('name: ')}",
                           field=where) from None

    names = list(fields)
    infos = await asyncio.gather(*(one(n) for n in names))
    return dict(zip(names, infos, strict=True))


def _check_output(info: Any, output: str, where: str, problems: Problems) -> None:
    known = [o.name for o in info.outputs]
    if output not in known:
        problems.add(where, f"{info.name} has no output {output!r} (outputs: "
                            f"{', '.join(known)})")


def _constraint_term(k: int, c: Any, infos: dict[str, Any], problems: Problems) -> Term:
    if c.formula is not None:
        _check_output(infos[c.formula], c.output, f"constraints[{k}].output", problems)
        return Term(f"constraints[{k}].formula", f"{c.formula}.{c.output}", c.formula,
                    c.output)
    return Term(f"constraints[{k}].expression", c.expression, expression=c.expression)


def _variables(body: ParametersRequest, info: Any, problems: Problems
               ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    params = {p.name: p for p in info.parameters}
    names: list[str] = []
    lower, upper, initial = [], [], []
    for i, v in enumerate(body.variables):
        where = f"variables[{i}]"
        p = params.get(v.name)
        if p is None:
            problems.add(f"{where}.name", f"not a parameter of {info.name} (parameters: "
                                          f"{', '.join(params)})")
            continue
        if v.name in names:
            problems.add(f"{where}.name", f"variable {v.name!r} is listed twice")
            continue
        lo = p.min if v.lower is None else v.lower
        hi = p.max if v.upper is None else v.upper
        if lo < p.min or hi > p.max:
            problems.add(f"{where}.{'lower' if lo < p.min else 'upper'}",
                         f"outside {info.name}'s range for {v.name}: [{p.min:g}, {p.max:g}] "
                         f"{p.unit}")
            continue
        if not lo < hi:
            problems.add(where, f"lower ({lo:g}) must be below upper ({hi:g})")
            continue
        start = v.initial if v.initial is not None else \
            p.default if p.default is not None and lo <= p.default <= hi else (lo + hi) / 2
        if not lo <= start <= hi:
            problems.add(f"{where}.initial", f"{start:g} is outside [{lo:g}, {hi:g}]")
            continue
        names.append(v.name)
        lower.append(lo)
        upper.append(hi)
        initial.append(start)
    return names, np.array(lower), np.array(upper), np.array(initial)


def _check_parameters(body: ParametersRequest, infos: dict[str, Any], names: list[str],
                      terms: list[Term], problems: Problems) -> None:
    """Every formula parameter has a value; every fixed value is used by something."""
    used: set[str] = set()
    for formula, info in infos.items():
        for p in info.parameters:
            used.add(p.name)
            if p.name not in names and p.name not in body.fixed and p.default is None:
                problems.add(f"fixed.{p.name}", f"required by {formula} ({p.description}, "
                                                f"{p.unit}); give it here or as a variable")
    for t in terms:
        if t.expression is not None:
            read = _identifiers(t.expression)
            if read is None:
                return  # sfde's up-front evaluation reports the syntax error
            used |= read
    for name in body.fixed:
        if name in names:
            problems.add(f"fixed.{name}", "is also a variable; give it in one place")
        elif name not in used:
            problems.add(f"fixed.{name}", "not a parameter of any formula here nor a name in "
                                          "any expression")


def _identifiers(expression: str) -> set[str] | None:
    """Names an expression reads (None if it does not parse). Parsing only: nothing runs;
    sfde judges everything else (functions, constants, limits)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _with_names(t: Term, known: set[str]) -> Term:
    if t.expression is None:
        return t
    names = _identifiers(t.expression)
    return Term(t.where, t.label, expression=t.expression,
                names=tuple(sorted(known if names is None else names & known)))


@dataclass
class SfdeBatch:
    ctx: ServiceContext
    spec: Spec
    calls: int = 0
    _column: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._column = {name: i for i, name in enumerate(self.spec.names)}

    async def evaluate(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Objective (k) and constraint values (k x m) at the k rows of X."""
        spec = self.spec
        formulas = [spec.objective.formula, *(t.formula for t in spec.constraints)]
        distinct = [f for f in dict.fromkeys(formulas) if f is not None]
        where = {t.formula: t.where for t in reversed([spec.objective, *spec.constraints])
                 if t.formula is not None}
        results = await asyncio.gather(
            *(self._formula(f, X, where[f]) for f in distinct),
            *(self._expression(t, X) for t in spec.constraints if t.expression is not None))
        outputs = dict(zip(distinct, results[:len(distinct)], strict=True))
        expressions = iter(results[len(distinct):])
        f = np.asarray(outputs[spec.objective.formula][spec.objective.output], dtype=float)
        columns = [np.asarray(outputs[t.formula][t.output], dtype=float)
                   if t.formula is not None else next(expressions)
                   for t in spec.constraints]
        g = np.column_stack(columns) if columns else np.zeros((len(X), 0))
        return f, g

    async def _formula(self, formula: str, X: np.ndarray, where: str
                       ) -> dict[str, list[float]]:
        k = len(X)
        columns = {p: X[:, self._column[p]].tolist() if p in self._column else
                   [self.spec.fixed[p]] * k
                   for p in self.spec.parameters[formula]
                   if p in self._column or p in self.spec.fixed}
        result = await self._call(evaluate, {"formula": formula, "columns": columns},
                                  where, X)
        return result.outputs  # type: ignore[no-any-return]

    async def _expression(self, t: Term, X: np.ndarray) -> np.ndarray:
        variables = {n: X[:, self._column[n]].tolist() if n in self._column else
                     self.spec.fixed[n] for n in t.names}
        result = await self._call(evaluate_expression,
                                  {"expression": t.expression, "variables": variables},
                                  t.where, X)
        if result.values is not None:
            return np.asarray(result.values, dtype=float)
        return np.full(len(X), float(result.value))

    async def _call(self, operation: Callable[..., Awaitable[Any]], body: dict[str, Any],
                    where: str, X: np.ndarray) -> Any:
        """An sfde operation over values built from the request (a mapping: sfde validates
        it and names the field, which `_blame` turns into the request's)."""
        self.calls += 1
        try:
            return await self.ctx.call(operation, body)
        except BemError as exc:
            where = self._blame(where, exc.field)
            point = ", ".join(f"{n}={X[0, i]:.6g}" for i, n in enumerate(self.spec.names))
            raise type(exc)(f"{where}: sfde could not evaluate it at {point}: {exc.message}",
                            field=where, details=exc.details, headers=exc.headers) from None

    def _blame(self, where: str, sfde_field: str | None) -> str:
        """A fixed value sfde refuses (columns.b[0], variables.M) is named as fixed.<name>."""
        name = (sfde_field or "").partition(".")[2].partition("[")[0]
        return f"fixed.{name}" if name in self.spec.fixed else where


def blocking(batch: SfdeBatch, loop: asyncio.AbstractEventLoop, deadline: float
             ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The batch as a plain function for the solver's thread, bounded by the deadline."""
    def run(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        future = asyncio.run_coroutine_threadsafe(batch.evaluate(X), loop)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LimitReached("time_limit") from None
    return run
