"""Continuous parameter optimisation with `scipy.optimize.minimize` (SLSQP).

Synchronous and independent of where the values come from: the caller hands in
`batch(X) -> (f, G)`, the objective and every constraint value at each row of the points
matrix X (k x n). The API module's batch calls sfde through the service client; the tests
can hand in NumPy.

Why a batch: a finite-difference gradient needs n + 1 points. `Evaluator` asks for them in
one call (one vectorised sfde request per formula instead of n + 1 round trips), caches
the values by point, so SciPy's separate requests for objective, gradient, constraints and
their Jacobian at the same point cost nothing more, and keeps the best feasible point seen
in case a limit stops the solver.

Scaling: variables are mapped to the unit box (z = (x - lower) / (upper - lower)), the
objective is divided by its magnitude at the start point and every constraint by its bound,
so SLSQP's fixed tolerances mean the same thing for a beam in millimetres and a cash flow
in millions.

Why SLSQP and not trust-constr: SLSQP is an active-set SQP method and lands on active
constraints (the beam test's stress limit) to ~1e-9; trust-constr's interior-point
iterations stopped 0.1-0.4 % inside the same constraint, whatever its tolerances.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import Bounds, minimize

Batch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
STEP = float(np.sqrt(np.finfo(float).eps))  # forward-difference step in the unit box
FEASIBILITY = 1e-6  # relative constraint violation accepted as satisfied


class LimitReached(Exception):
    """The time limit passed (or the caller went away) while the solver was running."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class Problem:
    lower: np.ndarray  # n
    upper: np.ndarray  # n
    initial: np.ndarray  # n
    maximize: bool
    con_lower: np.ndarray  # m, -inf where absent
    con_upper: np.ndarray  # m, +inf where absent
    max_iterations: int = 200
    tolerance: float = 1e-8
    time_limit: float = 30.0


@dataclass
class Outcome:
    status: str  # optimal | infeasible | iteration_limit | time_limit | solver_failed
    x: np.ndarray | None  # the answer (best feasible point for a limit), None if none
    objective: float | None
    constraints: np.ndarray | None
    iterations: int
    evaluations: int
    batches: int
    message: str


@dataclass
class Evaluator:
    problem: Problem
    batch: Batch
    deadline: float
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.monotonic
    f_scale: float = 1.0
    evaluations: int = 0
    batches: int = 0
    iterations: int = 0
    best: tuple[float, np.ndarray, np.ndarray] | None = None  # (objective, x, G)
    _cache: dict[bytes, tuple[float, np.ndarray]] = field(default_factory=dict)

    def x_of(self, z: np.ndarray) -> np.ndarray:
        p = self.problem
        return p.lower + np.clip(z, 0.0, 1.0) * (p.upper - p.lower)

    def run(self, zs: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """Values at the rows of zs (unit box), one batch for those not cached yet."""
        keys = [np.clip(z, 0.0, 1.0).tobytes() for z in zs]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            if self.stop.is_set():
                raise LimitReached("cancelled")
            if self.clock() >= self.deadline:
                raise LimitReached("time_limit")
            xs = self.x_of(zs[todo])
            f, g = self.batch(xs)
            self.batches += 1
            self.evaluations += len(todo)
            for row, i in enumerate(todo):
                self._cache[keys[i]] = (float(f[row]), np.asarray(g[row], dtype=float))
                self._track(float(f[row]), xs[row], g[row])
        return [self._cache[k] for k in keys]

    def _track(self, f: float, x: np.ndarray, g: np.ndarray) -> None:
        if not feasible(self.problem, g):
            return
        better = self.best is None or (f > self.best[0] if self.problem.maximize
                                       else f < self.best[0])
        if better:
            self.best = (f, x.copy(), np.asarray(g, dtype=float).copy())

    def outcome(self, status: str, point: tuple[float, np.ndarray, np.ndarray] | None,
                message: str) -> Outcome:
        f, x, g = point if point is not None else (None, None, None)
        return Outcome(status, x, f, g, self.iterations, self.evaluations, self.batches,
                       message)

    def count_iteration(self, *_args: Any) -> None:
        self.iterations += 1

    def value(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        return self.run(z[None, :])[0]

    def gradient(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward differences (backward at the upper edge), all points in one batch."""
        n = len(z)
        steps = np.where(z + STEP <= 1.0, STEP, -STEP)
        points = np.vstack([z, z + np.diag(steps)])
        values = self.run(points)
        f0, g0 = values[0]
        df = np.array([(values[i + 1][0] - f0) / steps[i] for i in range(n)])
        dg = np.array([(values[i + 1][1] - g0) / steps[i] for i in range(n)]).T
        return df, dg.reshape(len(g0), n)


def feasible(problem: Problem, g: np.ndarray) -> bool:
    g = np.asarray(g, dtype=float)
    s = con_scale(problem)
    return bool(np.all((g - problem.con_lower) / s >= -FEASIBILITY)
                and np.all((problem.con_upper - g) / s >= -FEASIBILITY))


def con_scale(problem: Problem) -> np.ndarray:
    """Each constraint is divided by the magnitude of its bounds (1 if both are 0 or absent)."""
    bounds = np.abs(np.vstack([problem.con_lower, problem.con_upper]))
    magnitude = np.where(np.isfinite(bounds), bounds, 0.0).max(axis=0, initial=0.0)
    return np.where(magnitude > 0, magnitude, 1.0)


def solve(problem: Problem, batch: Batch, *, stop: threading.Event | None = None,
          clock: Callable[[], float] = time.monotonic) -> Outcome:
    """Run the solver; limits and infeasibility are outcomes, not exceptions."""
    ev = Evaluator(problem, batch, clock() + problem.time_limit, stop or threading.Event(),
                   clock)
    z0 = (problem.initial - problem.lower) / (problem.upper - problem.lower)
    try:
        f0, _ = ev.value(z0)
        ev.f_scale = abs(f0) if f0 != 0 and np.isfinite(f0) else 1.0
        result = _minimize(problem, ev, z0)
        z = np.asarray(result.x, dtype=float)
        f, g = ev.value(z)
    except LimitReached as limit:
        return _limited(ev, limit.kind, f"stopped after {problem.time_limit:g} s (time_limit)")
    status = {0: "converged", 9: "iteration_limit"}.get(int(result.status), "failed")
    if status == "iteration_limit":
        return _limited(ev, status, f"stopped after {problem.max_iterations} iterations "
                                    f"(max_iterations)")
    if not feasible(problem, g):
        return ev.outcome("infeasible", None, f"no feasible point found (SLSQP: "
                                              f"{result.message})")
    x = ev.x_of(z)
    if status != "converged":  # a feasible point, but no claim it is optimal: no answer
        return ev.outcome("solver_failed", None, f"SLSQP did not converge: {result.message} "
                                                 f"(stopped at {np.round(x, 6).tolist()}); "
                                                 f"try another initial point")
    return ev.outcome("optimal", (f, x, g), str(result.message))


def _limited(ev: Evaluator, kind: str, message: str) -> Outcome:
    if ev.best is None:
        return ev.outcome(kind, None, message + "; no feasible point was found before that")
    return ev.outcome(kind, ev.best, message + "; the answer is the best feasible point "
                                               "evaluated")


def _minimize(problem: Problem, ev: Evaluator, z0: np.ndarray) -> Any:
    sign = -1.0 if problem.maximize else 1.0
    lo, hi, scale = problem.con_lower, problem.con_upper, con_scale(problem)

    def fun(z: np.ndarray) -> float:
        return sign * ev.value(z)[0] / ev.f_scale

    def jac(z: np.ndarray) -> np.ndarray:
        return sign * ev.gradient(z)[0] / ev.f_scale

    def con(z: np.ndarray) -> np.ndarray:
        return ev.value(z)[1] / scale

    def con_jac(z: np.ndarray) -> np.ndarray:
        return ev.gradient(z)[1] / scale[:, None]

    box = Bounds(np.zeros_like(z0), np.ones_like(z0))
    return minimize(fun, z0, jac=jac, bounds=box, method="SLSQP",
                    options={"maxiter": problem.max_iterations, "ftol": problem.tolerance},
                    constraints=_slsqp_constraints(con, con_jac, lo / scale, hi / scale),
                    callback=ev.count_iteration)


def _slsqp_constraints(con: Callable[[np.ndarray], np.ndarray],
                       con_jac: Callable[[np.ndarray], np.ndarray], lo: np.ndarray,
                       hi: np.ndarray) -> list[dict[str, Any]]:
    """Scaled g >= lower and g <= upper as `ineq` rows; lower == upper as an `eq` row."""
    eq = np.isfinite(lo) & (lo == hi)
    has_lo = np.isfinite(lo) & ~eq
    has_hi = np.isfinite(hi) & ~eq
    out: list[dict[str, Any]] = []
    if has_lo.any() or has_hi.any():
        out.append({"type": "ineq",
                    "fun": lambda z: np.concatenate([(con(z) - lo)[has_lo],
                                                     (hi - con(z))[has_hi]]),
                    "jac": lambda z: np.vstack([con_jac(z)[has_lo], -con_jac(z)[has_hi]])})
    if eq.any():
        out.append({"type": "eq", "fun": lambda z: (con(z) - lo)[eq],
                    "jac": lambda z: con_jac(z)[eq]})
    return out
