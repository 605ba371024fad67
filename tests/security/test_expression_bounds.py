"""The expression evaluator's resource bounds, by property: for any input, the work and the
memory of an evaluation stay within its budgets (or it is refused with a 4xx first).

tests/services/sfde/test_expressions.py already shows, over the same random inputs, that no
input executes code and that every outcome is a finite value or a 4xx; this module reuses
its strategies and adds what that leaves open: bounded time (counted as element operations,
never timed) and bounded memory (the tracemalloc peak, NumPy's buffers included).
Budgets are scaled down (a few MB) so that each example is quick; one test checks the
production budget over a million rows.
"""

from __future__ import annotations

import ast
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bem.errors import BemError, PayloadTooLarge
from bem.services.sfde import expressions
from bem.services.sfde.expressions import MAX_WORKING_BYTES, evaluate_expression
from tests.services.sfde.test_expressions import safe_branches, safe_leaves, trees

MAX_OPS = 200_000  # element operations
MAX_BYTES = 512 * 1024  # intermediate arrays alive at once
SLACK_ARRAYS = 3  # transient temporaries of one operation (log(x, b): two logs, a quotient)


class Counted:
    """numpy, except that `asarray` (which `run` calls on every operation's result)
    counts the elements it sees."""

    def __init__(self) -> None:
        self.elements = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    def asarray(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        array = np.asarray(value, *args, **kwargs)
        self.elements += array.size
        return array


@contextmanager
def measured() -> Iterator[tuple[Counted, list[int]]]:
    """Element operations and the peak traced memory (bytes) of what runs inside."""
    counted, peak = Counted(), [0]
    tracemalloc.start()
    try:
        with mock.patch.object(expressions, "np", counted):
            yield counted, peak
        peak[0] = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def check_bounded(source: str, variables: dict[str, Any]) -> None:
    rows = max((len(v) for v in variables.values() if isinstance(v, list)), default=1)
    values = sum(len(v) if isinstance(v, list) else 1 for v in variables.values())
    with measured() as (counted, peak):
        try:
            evaluate_expression(source, variables, max_length=2000, max_rows=10**6,
                                max_ops=MAX_OPS, max_bytes=MAX_BYTES)
        except BemError as exc:
            assert 400 <= exc.status < 500, exc
    # bind_variables makes the inputs' arrays (counted and traced too)
    assert counted.elements <= MAX_OPS + values, (counted.elements, source)
    assert peak[0] <= MAX_BYTES + 8 * values + SLACK_ARRAYS * 8 * rows + 2**20, (peak[0], source)


def source_of(tree: ast.expr) -> str:
    return ast.unparse(ast.fix_missing_locations(ast.Expression(tree)))


rows = st.integers(min_value=10_000, max_value=50_000)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(trees, rows)
def test_any_tree_is_bounded(tree: ast.expr, n: int) -> None:
    check_bounded(source_of(tree), {"x": [1.5] * n, "y": [-0.5] * n})


# Wide and nested calls: the shapes that keep many intermediate arrays alive at once.
wide = st.recursive(safe_leaves, lambda kids: st.one_of(
    safe_branches(kids),
    st.builds(lambda args: ast.Call(ast.Name("max", ast.Load()), args, []),
              st.lists(kids, min_size=2, max_size=64))), max_leaves=200)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(wide, rows)
def test_wide_and_nested_calls_are_bounded(tree: ast.expr, n: int) -> None:
    check_bounded(source_of(tree), {"x": [2.0] * n, "y": [3.0] * n})


def test_many_live_arrays_over_a_million_rows_are_refused_before_any_work() -> None:
    """`max(-x, ..., -x)` over 10**6 rows held 64 arrays (512 MB) before the budget."""
    x = np.full(10**6, 0.5)
    with measured() as (counted, peak), pytest.raises(PayloadTooLarge) as err:
        evaluate_expression("max(" + ",".join(["-x"] * 40) + ")", {"x": x},
                            max_length=2000, max_rows=10**6)
    assert err.value.field == "expression" and "intermediate arrays" in err.value.message
    assert counted.elements == x.size  # binding the variable: no operation ran
    assert peak[0] < MAX_WORKING_BYTES / 4  # the input array, not the 40 results
