"""The SLSQP driver on NumPy batches: closed-form optima, batching, limits."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from bem.services.optimization.parameters import Problem, solve

B, M, SIGMA = 200.0, 50.0, 165.0  # mm, kN m, MPa
H_STAR = math.sqrt(6 * M * 1e6 / (B * SIGMA))  # depth at which the stress limit is reached


def beam(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area b h [mm2] and bending stress 6 M / (b h^2) [MPa] of a b x h section."""
    h = xs[:, 0]
    return B * h, (6 * M * 1e6 / (B * h**2))[:, None]


def problem(**kw: object) -> Problem:
    values: dict[str, object] = dict(
        lower=np.array([10.0]), upper=np.array([1000.0]), initial=np.array([500.0]),
        maximize=False, con_lower=np.array([-np.inf]), con_upper=np.array([SIGMA]))
    values.update(kw)
    return Problem(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("start", [12.0, 95.0, 500.0, 990.0])
def test_beam_depth_matches_the_closed_form(start: float) -> None:
    out = solve(problem(initial=np.array([start])), beam)
    assert out.status == "optimal"
    assert out.x is not None and out.x[0] == pytest.approx(H_STAR, rel=1e-7)
    assert out.objective == pytest.approx(B * H_STAR, rel=1e-7)
    assert out.constraints is not None and out.constraints[0] == pytest.approx(SIGMA, rel=1e-7)


def test_two_variables_and_maximisation() -> None:
    """Maximise S = b h^2 / 6 with area b h <= A and h <= 3 b: h = 3 b, b = sqrt(A / 3)."""
    area = 30_000.0

    def section(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, h = xs[:, 0], xs[:, 1]
        return b * h**2 / 6, np.column_stack([b * h, h - 3 * b])

    p = Problem(lower=np.array([10.0, 10.0]), upper=np.array([500.0, 1500.0]),
                initial=np.array([100.0, 100.0]), maximize=True,
                con_lower=np.array([-np.inf, -np.inf]), con_upper=np.array([area, 0.0]))
    out = solve(p, section)
    b = math.sqrt(area / 3)
    assert out.status == "optimal"
    assert out.x is not None and out.x == pytest.approx([b, 3 * b], rel=1e-6)


def test_a_gradient_is_one_batch() -> None:
    sizes: list[int] = []

    def recording(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sizes.append(len(xs))
        x = xs
        return (x**2).sum(axis=1), x.sum(axis=1)[:, None]

    n = 4
    p = Problem(lower=np.full(n, -5.0), upper=np.full(n, 5.0), initial=np.full(n, 3.0),
                maximize=False, con_lower=np.array([2.0]), con_upper=np.array([np.inf]))
    out = solve(p, recording)
    assert out.status == "optimal" and out.x == pytest.approx([0.5] * n, abs=1e-6)
    assert max(sizes) == n  # the n shifted points of a gradient, the base point being cached
    assert len(sizes) == out.batches < out.evaluations


def test_infeasible_bounds() -> None:
    out = solve(problem(upper=np.array([50.0]), initial=np.array([30.0])), beam)
    assert out.status == "infeasible" and out.x is None
    assert "no feasible point" in out.message


def test_iteration_limit_returns_the_best_feasible_point() -> None:
    out = solve(problem(max_iterations=1), beam)
    assert out.status == "iteration_limit"
    assert out.x is not None and out.constraints is not None
    assert out.constraints[0] <= SIGMA and out.x[0] >= H_STAR


def test_time_limit_with_and_without_a_feasible_point() -> None:
    ticks = iter(range(1000))  # a clock that advances one second per reading

    out = solve(problem(time_limit=4.0), beam, clock=lambda: float(next(ticks)))
    assert out.status == "time_limit" and out.x is not None  # the start point is feasible
    assert out.constraints is not None and out.constraints[0] <= SIGMA

    ticks = iter(range(1000))
    infeasible_start = problem(time_limit=4.0, initial=np.array([20.0]))
    out = solve(infeasible_start, beam, clock=lambda: float(next(ticks)))
    assert out.status == "time_limit" and out.x is None
    assert "no feasible point" in out.message


def test_a_stopped_solve_ends_at_its_next_evaluation() -> None:
    stop = threading.Event()
    stop.set()
    out = solve(problem(), beam, stop=stop)
    assert out.status == "cancelled" and out.evaluations == 0
