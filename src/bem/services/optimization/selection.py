"""Option selection as a binary MILP, solved with HiGHS (its own binding, `highspy`).

Variables x[v] in {0, 1}, one per (component, option), laid out component by component.

    maximise    sum_v value[v] x[v]            value = weighted score of the option
    subject to  sum_{v in component c} x[v] = 1     for every component c
                sum_v cost[v] x[v] <= budget        (when a budget is given)
                lower_k <= sum_v a_k[v] x[v] <= upper_k   extra linear constraints

Pure functions over NumPy arrays: `solve_selection` is what runs in a pool worker.

HiGHS is called directly rather than through `scipy.optimize.milp` (the same solver):
the process serving optimization holds ~32 MB less (PSS 108 -> 76 MB in `optimized`'s logic
cluster after `bem bench`'s warm-up) without SciPy's optimize package, and
HiGHS's own model status comes back as is instead of folded into SciPy's five codes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np

# HighsModelStatus -> outcome; anything else (load errors, "unknown") is solver_failed.
_STATUS = {7: "optimal", 8: "infeasible", 9: "infeasible", 10: "unbounded", 13: "time_limit",
           14: "iteration_limit", 16: "iteration_limit"}  # 16: "solution limit" = node_limit
ANSWERS = ("optimal", "time_limit", "iteration_limit")  # outcomes that carry a selection
TOLERANCE = 1e-9  # slack in the single-constraint infeasibility diagnosis
_FEASIBLE = 2  # HiGHS solution status kSolutionStatusFeasible


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
    # The binding's base class: its Python subclass registers a callback at construction,
    # which makes HiGHS print its banner on stdout before output_flag can be turned off
    # (ERGO-Code/HiGHS#1702). The options are set before anything else is called.
    highs = highspy._Highs()
    for name, value in (("output_flag", False), ("threads", 1),
                        ("time_limit", float(problem.time_limit)),
                        ("mip_rel_gap", float(problem.mip_gap))):
        highs.setOptionValue(name, value)
    if problem.max_nodes is not None:
        highs.setOptionValue("mip_max_nodes", int(problem.max_nodes))
    highs.passModel(_model(problem))
    start = time.perf_counter()
    highs.run()
    seconds = time.perf_counter() - start
    model_status = highs.getModelStatus()
    status = _STATUS.get(int(model_status), "solver_failed")
    info = highs.getInfo()
    answer: dict[str, Any] = {
        "status": status, "chosen": None, "objective": None,
        "bound": _float(info.mip_dual_bound), "gap": _float(info.mip_gap),
        "seconds": seconds, "nodes": int(info.mip_node_count),
        "message": f"HiGHS {highspy.HIGHS_VERSION_MAJOR}.{highspy.HIGHS_VERSION_MINOR}: "
                   f"{highs.modelStatusToString(model_status)}",
        "diagnosis": diagnose(problem) if status == "infeasible" else None}
    if status in ANSWERS and info.primal_solution_status == _FEASIBLE:
        x = np.asarray(highs.getSolution().col_value) > 0.5
        answer["chosen"] = [int(i) for i in np.flatnonzero(x) - problem.starts]
        answer["objective"] = float(problem.values[x].sum())
    return answer


def _model(problem: SelectionProblem) -> highspy.HighsLp:
    """The MILP row by row: one equality row per component, the budget, the extra rows."""
    n, k = problem.size, len(problem.starts)
    # Components are contiguous, so their rows together are every column once, in order.
    starts, columns, values = [problem.starts], [np.arange(n)], [np.ones(n)]
    lower, upper = [np.ones(k)], [np.ones(k)]
    end = n
    if problem.budget is not None:
        starts.append(np.array([end]))
        columns.append(np.arange(n))
        values.append(np.asarray(problem.costs, dtype=float))
        lower.append(np.array([-highspy.kHighsInf]))
        upper.append(np.array([problem.budget]))
        end += n
    for row in problem.rows:
        # HiGHS refuses a repeated column in a row: the coefficients of one are summed.
        used, where = np.unique(row.columns, return_inverse=True)
        summed = np.zeros(len(used))
        np.add.at(summed, where, row.coefficients)
        starts.append(np.array([end]))
        columns.append(used)
        values.append(summed)
        lower.append(np.array([row.lower]))
        upper.append(np.array([row.upper]))
        end += len(used)
    lp = highspy.HighsLp()
    lp.num_col_ = lp.a_matrix_.num_col_ = n
    lp.num_row_ = lp.a_matrix_.num_row_ = k + (problem.budget is not None) + len(problem.rows)
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = np.asarray(problem.values, dtype=float)
    lp.col_lower_, lp.col_upper_ = np.zeros(n), np.ones(n)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    lp.row_lower_ = np.concatenate(lower).astype(float)
    lp.row_upper_ = np.concatenate(upper).astype(float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.concatenate([*starts, [end]]).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate(columns).astype(np.int32)
    lp.a_matrix_.value_ = np.concatenate(values).astype(float)
    return lp


def _float(value: Any) -> float | None:
    return float(value) if value is not None and abs(value) < highspy.kHighsInf else None


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
