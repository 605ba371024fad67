"""The safe expression evaluator alone: values, refusals, and properties over random input."""

from __future__ import annotations

import ast
import builtins
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bem.errors import BemError, PayloadTooLarge, ValidationFailed
from bem.services.sfde.expressions import MAX_DEPTH, MAX_NODES, evaluate_expression

LIMITS = {"max_length": 2000, "max_rows": 1000}


def ev(expression: str, **variables: Any) -> Any:
    return evaluate_expression(expression, variables, **LIMITS)


@pytest.mark.parametrize(("expression", "variables", "expected"), [
    ("1 + 2 * 3", {}, 7.0),
    ("w * L**2 / 8", {"w": 10, "L": 6}, 45.0),
    ("2 ** 3 ** 2", {}, 512.0),  # right-associative, as in Python
    ("-2 ** 2", {}, -4.0),
    ("7 // 2 + 7 % 3 + -7 // 2", {}, 3 + 1 - 4),
    ("-7 % 3", {}, 2.0),  # Python's sign convention (the divisor's)
    ("sqrt(16) + exp(0) + log(e) + log(8, 2) + log10(1000) + log2(8)", {}, 4 + 1 + 1 + 3 + 3 + 3),
    ("sin(pi / 2) + cos(0) + tan(0) + atan2(1, 1) * 4 / pi", {}, 3.0),
    ("abs(-3) + floor(2.7) + ceil(2.1) + round(2.5) + sign(-4)", {}, 3 + 2 + 3 + 2 - 1),
    ("min(3, 1, 2) + max(1, 5) + clip(12, 0, 10) + hypot(3, 4) + pow(2, 10)", {},
     1 + 5 + 10 + 5 + 1024),
    ("1 < x <= 3", {"x": 3}, 1.0),
    ("1 < x < 3", {"x": 3}, 0.0),
    ("x == 2 or x != 2", {"x": 5}, 1.0),
    ("0 and 1/0", {}, 0.0),
    ("x or 7", {"x": 0}, 7.0),
    ("not x", {"x": 0}, 1.0),
    ("1 / x if x != 0 else 0", {"x": 0}, 0.0),  # the discarded branch's inf never shows
    ("  degrees(pi) - radians(180) * 180 / pi  ", {}, 0.0),
    ("1e3 + 0x10 + 1_000", {}, 1000 + 16 + 1000),
])
def test_values(expression: str, variables: dict[str, float], expected: float) -> None:
    assert ev(expression, **variables) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_arrays_evaluate_element_wise_like_scalars() -> None:
    xs = [-2.0, 0.0, 0.5, 3.0]
    expr = "x**2 + y if x > 0 else max(x, y) - 1"
    together = ev(expr, x=xs, y=1.5)
    assert isinstance(together, np.ndarray) and together.shape == (4,)
    assert together.tolist() == [ev(expr, x=x, y=1.5) for x in xs]
    assert ev("pi", x=xs).tolist() == [math.pi] * 4  # broadcast to the rows


@pytest.mark.parametrize(("expression", "needle"), [
    ("__import__('os').system('true')", "attribute access"),
    ("__import__('os')", "calling '__import__' is not allowed"),
    ("open('/etc/passwd')", "calling 'open' is not allowed"),
    ("x.__class__", "attribute access"),
    ("(1).real", "attribute access"),
    ("x[0]", "subscripts"),
    ("lambda: 1", "lambda"),
    ("[i for i in (1, 2)]", "comprehensions"),
    ("sum(i for i in (1, 2))", "calling 'sum'"),
    ("(y := 2)", "assignment"),
    ("f'{x}'", "f-strings"),
    ("'text'", "only numbers"),
    ("True + 1", "only numbers"),
    ("None", "only numbers"),
    ("1j", "only numbers"),
    ("x @ x", "operator '@'"),
    ("x & 1", "operator '&'"),
    ("~x", "operator '~'"),
    ("x in (1, 2)", "operator 'in'"),
    ("x is 1", "operator 'is'"),
    ("sqrt", "is a function"),
    ("sqrt(1, 2)", "takes 1 argument, got 2"),
    ("max()", "takes 1 to 64 arguments, got 0"),
    ("min(x, key=abs)", "no keyword arguments"),
    ("max(*x)", "unpacking"),
    ("y + 1", "unknown variable 'y'"),
    ("9**9**9", "not finite"),
    ("10.0**400", "not finite"),
    ("1 / 0", "not finite"),
    ("sqrt(-1)", "not finite"),
    ("log(0)", "not finite"),
    ("1" * 400, "too large for float64"),
    ("1e999", "too large for float64"),
    ("1 +", "invalid syntax"),
    ("x = 1", "invalid syntax"),
    ("import os", "invalid syntax"),
    ("(" * 300 + "1" + ")" * 300, "too many nested parentheses"),
    ("-" * 500 + "1", f"nested more than {MAX_DEPTH} levels"),
    ("1" + "+1" * 999, "nested more than"),
    ("max(" + "1," * 64 + "1)", "takes 1 to 64 arguments, got 65"),
])
def test_refusals_are_422_naming_the_problem(expression: str, needle: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        ev(expression, x=2.0)
    assert err.value.field == "expression"
    assert needle in err.value.message, err.value.message


def test_node_count_is_bounded() -> None:
    """Reachable when MAX_EXPRESSION_LENGTH is raised (at 2000 characters, ~1000 nodes)."""
    wide = "+".join(["max(" + ",".join(["x"] * 60) + ")"] * 20)  # shallow but many nodes
    with pytest.raises(ValidationFailed, match=f"more than {MAX_NODES} operations"):
        evaluate_expression(wide, {"x": 1.0}, max_length=10_000, max_rows=10)


def test_size_limits_are_413() -> None:
    with pytest.raises(PayloadTooLarge, match="MAX_EXPRESSION_LENGTH"):
        ev("1+" * 1001 + "1")
    with pytest.raises(PayloadTooLarge) as err:
        ev("x", x=list(range(1001)))
    assert err.value.field == "variables.x"


@pytest.mark.parametrize(("variables", "field", "needle"), [
    ({"x": [1.0, 2.0], "y": [1.0]}, "variables.y", "same, non-zero length (2)"),
    ({"x": []}, "variables.x", "non-zero length"),
    ({"x": [1.0, float("nan")]}, "variables.x", "not a finite number"),
    ({"x": float("inf")}, "variables.x", "not a finite number"),
    ({"pi": 3.0}, "variables.pi", "reserved"),
    ({"sqrt": 3.0}, "variables.sqrt", "reserved"),
    ({"2x": 3.0}, "variables.2x", "letters, digits and _"),
    ({"__class__.x": 3.0}, "variables.__class__.x", "letters, digits and _"),
    ({"x": [[1.0]]}, "variables.x", "a number or a list of numbers"),
])
def test_bad_variables(variables: dict[str, Any], field: str, needle: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        evaluate_expression("1", variables, **LIMITS)
    assert err.value.field == field and needle in err.value.message


# --- properties over random input ---------------------------------------------------------
@contextmanager
def no_code_execution() -> Iterator[None]:
    """Fail the test if anything evaluates, executes or compiles code (parsing is allowed)."""
    real_compile = builtins.compile

    def only_parse(source: Any, filename: Any, mode: str, flags: int = 0, *a: Any,
                   **kw: Any) -> Any:
        assert flags & ast.PyCF_ONLY_AST, "compile() to code object"
        return real_compile(source, filename, mode, flags, *a, **kw)

    def forbidden(*_a: Any, **_kw: Any) -> Any:
        raise AssertionError("eval/exec called")

    real_import = builtins.__import__

    def guarded_import(name: str, *a: Any, **kw: Any) -> Any:
        # the parser may import unicodedata for identifiers; a user's import never happens
        assert name.partition(".")[0] not in {"os", "subprocess", "sys", "shutil", "socket"}
        return real_import(name, *a, **kw)

    with mock.patch.object(builtins, "compile", only_parse), \
            mock.patch.object(builtins, "eval", forbidden), \
            mock.patch.object(builtins, "exec", forbidden), \
            mock.patch.object(builtins, "__import__", guarded_import):
        yield


def outcome(expression: str, variables: dict[str, Any]) -> None:
    """The property: a finite float (or finite array) or a 4xx BemError; nothing else."""
    with no_code_execution():
        try:
            result = evaluate_expression(expression, variables, **LIMITS)
        except BemError as exc:
            assert 400 <= exc.status < 500
            assert exc.field is not None and exc.message.startswith(exc.field)
            return
    assert np.all(np.isfinite(result))
    assert isinstance(result, float) or result.shape == (3,)


ALPHABET = "0123456789.eE+-*/%()<>=!,_ xyzabcdefghijklmnopqrstuvw'\"[]{}:@&|^~;\\\n\t"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(alphabet=ALPHABET, max_size=80), st.text(max_size=40)))
def test_random_strings(expression: str) -> None:
    outcome(expression, {"x": 2.5, "y": [1.0, -2.0, 0.0]})


NAMES = ["x", "y", "pi", "e", "sqrt", "log", "max", "__import__", "open", "os", "nope"]
BIN_OPS = [ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.MatMult,
           ast.BitAnd, ast.LShift]
CMP_OPS = [ast.Lt, ast.LtE, ast.Eq, ast.NotEq, ast.Gt, ast.In, ast.Is]

leaves = st.one_of(
    st.integers(min_value=-10**30, max_value=10**30).map(lambda v: ast.Constant(abs(v))),
    st.floats(allow_nan=False, allow_infinity=False, min_value=0).map(ast.Constant),
    st.sampled_from(["s", None, True, b"b"]).map(ast.Constant),
    st.sampled_from(NAMES).map(lambda n: ast.Name(n, ast.Load())),
)


def branches(children: st.SearchStrategy[ast.expr]) -> st.SearchStrategy[ast.expr]:
    args = st.lists(children, max_size=3)
    return st.one_of(
        st.builds(ast.BinOp, children, st.sampled_from(BIN_OPS).map(lambda o: o()), children),
        st.builds(ast.UnaryOp, st.sampled_from([ast.USub(), ast.UAdd(), ast.Not(),
                                                ast.Invert()]), children),
        st.builds(lambda a, op, b: ast.Compare(a, [op()], [b]), children,
                  st.sampled_from(CMP_OPS), children),
        st.builds(lambda op, vs: ast.BoolOp(op, vs), st.sampled_from([ast.And(), ast.Or()]),
                  st.lists(children, min_size=2, max_size=3)),
        st.builds(ast.IfExp, children, children, children),
        st.builds(lambda n, a: ast.Call(ast.Name(n, ast.Load()), a, []),
                  st.sampled_from(NAMES), args),
        st.builds(lambda v: ast.Call(ast.Attribute(v, "system", ast.Load()), [], []), children),
        st.builds(lambda v: ast.Attribute(v, "__class__", ast.Load()), children),
        st.builds(lambda v, i: ast.Subscript(v, i, ast.Load()), children, children),
        st.builds(lambda b: ast.Lambda(ast.arguments([], [], None, [], [], None, []), b),
                  children),
        st.builds(lambda vs: ast.Tuple(vs, ast.Load()), args),
        st.builds(lambda b, it: ast.ListComp(b, [ast.comprehension(
            ast.Name("i", ast.Store()), it, [], 0)]), children, children),
    )


trees = st.recursive(leaves, branches, max_leaves=40)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_random_syntax_trees(tree: ast.expr) -> None:
    source = ast.unparse(ast.fix_missing_locations(ast.Expression(tree)))
    outcome(source, {"x": 2.5, "y": [1.0, -2.0, 0.0]})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["x", "2", "pi", "+", "-", "*", "/", "**", "//", "%", "(",
                                 ")", "sqrt(", "max(x,", "<", "and", "if x else"]),
                max_size=60).map(" ".join))
def test_random_token_soup(expression: str) -> None:
    outcome(expression, {"x": [0.5, -1.0, 3.0]})


SAFE_FUNCTIONS = {"sqrt": 1, "exp": 1, "log": 2, "sin": 1, "abs": 1, "min": 3, "max": 2,
                  "atan2": 2, "clip": 3, "floor": 1}
safe_leaves = st.one_of(
    st.floats(min_value=0, max_value=1e6, allow_nan=False).map(ast.Constant),
    st.integers(min_value=0, max_value=10**6).map(ast.Constant),
    st.sampled_from(["x", "y", "pi", "e"]).map(lambda n: ast.Name(n, ast.Load())),
)


def safe_branches(children: st.SearchStrategy[ast.expr]) -> st.SearchStrategy[ast.expr]:
    return st.one_of(
        st.builds(ast.BinOp, children, st.sampled_from(BIN_OPS[:7]).map(lambda o: o()),
                  children),
        st.builds(ast.UnaryOp, st.sampled_from([ast.USub(), ast.Not()]), children),
        st.builds(lambda a, op, b: ast.Compare(a, [op()], [b]), children,
                  st.sampled_from(CMP_OPS[:5]), children),
        st.builds(lambda op, vs: ast.BoolOp(op, vs), st.sampled_from([ast.And(), ast.Or()]),
                  st.lists(children, min_size=2, max_size=3)),
        st.builds(ast.IfExp, children, children, children),
        st.sampled_from(sorted(SAFE_FUNCTIONS)).flatmap(lambda n: st.builds(
            lambda a: ast.Call(ast.Name(n, ast.Load()), a, []),
            st.lists(children, min_size=SAFE_FUNCTIONS[n], max_size=SAFE_FUNCTIONS[n]))),
    )


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(safe_leaves, safe_branches, max_leaves=30))
def test_whitelisted_trees_evaluate_or_overflow(tree: ast.expr) -> None:
    """Only allowed constructs: the answer is a finite value, or a 422 about the value."""
    source = ast.unparse(ast.fix_missing_locations(ast.Expression(tree)))
    scalar = {"x": 2.5, "y": -1.0}
    try:
        value = evaluate_expression(source, scalar, **LIMITS)
    except ValidationFailed as exc:
        assert "not finite" in exc.message or "nested more than" in exc.message, exc.message
        return
    assert math.isfinite(value)
    # element-wise over arrays: row i equals the scalar evaluation with row i's values
    rows = evaluate_expression(source, {"x": [2.5, 2.5], "y": -1.0}, **LIMITS)
    assert rows.tolist() == [value, value]
