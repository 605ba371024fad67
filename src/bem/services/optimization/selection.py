"""Option selection as a binary MILP, solved with `scipy.optimize.milp` (HiGHS).

Variables x[v] in {0, 1}, one per (component, option), laid out component by component.

    maximise    sum_v value[v] x[v]            value = weighted score of the option
    subject to  sum_{v in component c} x[v] = 1     for every component c
                sum_v cost[v] x[v] <= budget        (when a budget is given)
                lower_k <= sum_v a_k[v] x[v] <= upper_k   extra linear constraints

Pure functions over NumPy arrays: `solve_selection` is what runs in a pool worker.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

# HiGHS model status (HighsModelStatus) -> outcome; scipy folds several into one `status`.
_HIGHS = {7: "optimal", 8: "infeasible", 9: "infeasible", 10: "unbounded", 13: "time_limit",
          14: "iteration_limit", 16: "iteration_limit"}  # 16: "solution limit" = node_limit
_SCIPY = {0: "optimal", 2: "infeasible", 3: "unbounded", 4: "solver_failed"}
_HIGHS_STATUS = re.compile(r"HiGHS Status (\d+)")
ANSWERS = ("optimal", "time_limit", "iteration_limit")  # outcomes that carry a selection
TOLERANCE = 1e-9  # slack in the single-constraint infeasibility diagnosis


@dataclass(frozen=True)
class Row:
    """One extra constraint: lower <= sum(coefficients * x[columns]) <= upper."""

    columns: np.ndarray
    coefficients: np.ndarray
    lower: float
    upper: float


@dataclass(frozen=True)
class SelectionProblem:
    values: np.ndarray  # weighted score of each variable
    costs: np.ndarray
    starts: np.ndarray  # index of each component's first variable (components are contiguous)
    budget: float | None
    rows: tuple[Row, ...]
    time_limit: float
    max_nodes: int | None
    mip_gap: float

    @property
    def size(self) -> int:
        return len(self.values)


def solve_selection(problem: SelectionProblem) -> dict[str, Any]:
    """{status, chosen (option index per component, or None), objective, bound, gap, ...}."""
    n = problem.size
    groups = np.repeat(np.arange(len(problem.starts)), np.diff(np.append(problem.starts, n)))
    one_each = sparse.csr_array((np.ones(n), (groups, np.arange(n))),
                                shape=(len(problem.starts), n))
    constraints = [LinearConstraint(one_each, 1, 1)]
    if problem.budget is not None:
        constraints.append(LinearConstraint(problem.costs[None, :], -np.inf, problem.budget))
    if problem.rows:
        constraints.append(_extra(problem.rows, n))
    options: dict[str, Any] = {"time_limit": problem.time_limit, "mip_rel_gap": problem.mip_gap,
                               "disp": False}
    if problem.max_nodes is not None:
        options["node_limit"] = problem.max_nodes
    start = time.perf_counter()
    result = milp(-problem.values, integrality=np.ones(n), bounds=Bounds(0, 1),
                  constraints=constraints, options=options)
    seconds = time.perf_counter() - start
    status = _status(result, seconds, problem.time_limit)
    answer: dict[str, Any] = {
        "status": status, "chosen": None, "objective": None, "bound": _bound(result),
        "gap": _float(getattr(result, "mip_gap", None)), "seconds": seconds,
        "nodes": getattr(result, "mip_node_count", None), "message": str(result.message),
        "diagnosis": diagnose(problem) if status == "infeasible" else None}
    if result.x is not None and status in ANSWERS:
        x = np.asarray(result.x) > 0.5
        answer["chosen"] = [int(i) for i in np.flatnonzero(x) - problem.starts]
        answer["objective"] = float(problem.values[x].sum())
    return answer


def _extra(rows: tuple[Row, ...], n: int) -> LinearConstraint:
    r = np.concatenate([np.full(len(row.columns), k) for k, row in enumerate(rows)])
    c = np.concatenate([row.columns for row in rows])
    a = np.concatenate([row.coefficients for row in rows])
    matrix = sparse.csr_array((a, (r, c)), shape=(len(rows), n))  # duplicates are summed
    return LinearConstraint(matrix, [row.lower for row in rows], [row.upper for row in rows])


def _status(result: Any, seconds: float, time_limit: float) -> str:
    match = _HIGHS_STATUS.search(str(result.message))
    if match and int(match.group(1)) in _HIGHS:
        return _HIGHS[int(match.group(1))]
    if result.status == 1:  # "iteration or time limit": the clock tells which
        return "time_limit" if seconds >= time_limit else "iteration_limit"
    return _SCIPY.get(int(result.status), "solver_failed")


def _bound(result: Any) -> float | None:
    bound = _float(getattr(result, "mip_dual_bound", None))
    return None if bound is None else -bound  # milp minimised -score


def _float(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def diagnose(problem: SelectionProblem) -> tuple[int, str] | None:
    """A constraint that no selection can meet even on its own: (-1 for the budget, or k).

    With one option per component, the smallest and largest possible value of a linear
    expression are the sums over components of its smallest and largest coefficient.
    """
    n = problem.size
    if problem.budget is not None:
        cheapest = float(np.minimum.reduceat(problem.costs, problem.starts).sum())
        if cheapest > problem.budget + TOLERANCE * max(1.0, abs(problem.budget)):
            return -1, (f"the cheapest possible selection costs {cheapest:g}, more than the "
                        f"budget {problem.budget:g}")
    for k, row in enumerate(problem.rows):
        a = np.zeros(n)
        np.add.at(a, row.columns, row.coefficients)
        low = float(np.minimum.reduceat(a, problem.starts).sum())
        high = float(np.maximum.reduceat(a, problem.starts).sum())
        if low > row.upper + TOLERANCE * max(1.0, abs(row.upper)):
            return k, f"its smallest possible value is {low:g}, above the upper bound " \
                      f"{row.upper:g}"
        if high < row.lower - TOLERANCE * max(1.0, abs(row.lower)):
            return k, f"its largest possible value is {high:g}, below the lower bound " \
                      f"{row.lower:g}"
    return None
