"""Safe user expressions: a whitelist AST evaluator over float64 NumPy arrays.

The expression is parsed with `ast.parse` (parsing only: nothing is ever compiled to code,
`eval`-ed or `exec`-ed), every node is checked against a whitelist, and the tree is turned
into a flat postfix program that a small loop evaluates. Allowed: numbers, variables, the
constants pi and e, + - * / // % **, unary + - not, comparisons (chained too), and / or,
`a if c else b`, and calls of the functions in `FUNCTIONS`.

Bounds, so that any input ends quickly as a value or a 4xx:
- length <= MAX_EXPRESSION_LENGTH (413), at most MAX_NODES nodes nested at most MAX_DEPTH
  deep (422); the parser's own nesting limits and recursion are caught (422);
- every value is float64, so `9**9**9` is one float power that overflows to inf, never a
  big integer computed digit by digit; a non-finite result (overflow, 1/0, sqrt(-1)) is
  a 422;
- evaluation is iterative (no recursion), one NumPy operation per node;
- the work over array variables is bounded before anything runs: operations x rows at most
  MAX_ELEMENT_OPS (about 0.3 s of NumPy on the event loop), and the intermediate arrays
  alive at once x rows x 8 bytes at most MAX_WORKING_BYTES (413 otherwise). Without these,
  `max(-x, -x, ...)` nested over a million rows held gigabytes.

Semantics are element-wise over array variables (all arrays of one length, scalars
broadcast): comparisons give 1.0 / 0.0, `a and b` is `b` where `a` is non-zero else `a`,
`a or b` is `a` where `a` is non-zero else `b`, and `x if c else y` picks per element. Both
branches are computed, so `1/x if x != 0 else 0` is fine: the discarded inf never shows.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import reduce
from typing import Any

import numpy as np

from bem.errors import PayloadTooLarge, ValidationFailed

Array = np.ndarray[Any, np.dtype[np.float64]]
Instruction = tuple[Callable[..., Array] | None, Any]  # (fn, arity) or (None, value to push)

MAX_NODES = 1000
MAX_DEPTH = 100
MAX_ELEMENT_OPS = 50_000_000
MAX_WORKING_BYTES = 256 * 1024**2
FIELD = "expression"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _log(x: Array, base: Array | None = None) -> Array:
    return np.log(x) if base is None else np.log(x) / np.log(base)


def _truth(x: Array) -> Array:
    return x != 0.0


# name -> (function, min args, max args); min/max take any number of arguments
FUNCTIONS: dict[str, tuple[Callable[..., Array], int, int]] = {
    **{name: (getattr(np, name), 1, 1) for name in (
        "sqrt", "exp", "log10", "log2", "sin", "cos", "tan", "sinh", "cosh", "tanh", "floor",
        "ceil", "sign", "degrees", "radians")},
    "log": (_log, 1, 2),
    "asin": (np.arcsin, 1, 1), "acos": (np.arccos, 1, 1), "atan": (np.arctan, 1, 1),
    "atan2": (np.arctan2, 2, 2), "hypot": (np.hypot, 2, 2), "pow": (np.power, 2, 2),
    "abs": (np.abs, 1, 1), "round": (np.round, 1, 1), "clip": (np.clip, 3, 3),
    "min": (lambda *a: reduce(np.minimum, a), 1, 64),
    "max": (lambda *a: reduce(np.maximum, a), 1, 64),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
RESERVED = frozenset(FUNCTIONS) | frozenset(CONSTANTS)

_BINARY: dict[type[ast.operator], Callable[..., Array]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide, ast.Mod: np.mod, ast.Pow: np.power,
}
_UNARY: dict[type[ast.unaryop], Callable[..., Array]] = {
    ast.USub: np.negative, ast.UAdd: np.positive,
    ast.Not: lambda a: np.where(_truth(a), 0.0, 1.0),
}
_COMPARE: dict[type[ast.cmpop], Callable[..., Array]] = {
    ast.Eq: np.equal, ast.NotEq: np.not_equal, ast.Lt: np.less, ast.LtE: np.less_equal,
    ast.Gt: np.greater, ast.GtE: np.greater_equal,
}
_FORBIDDEN = {  # what to call the constructs people try, in error messages
    ast.Attribute: "attribute access (a.b)", ast.Subscript: "subscripts (a[i])",
    ast.Lambda: "lambda", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions",
    ast.NamedExpr: "assignment (:=)", ast.Starred: "unpacking (*)",
    ast.JoinedStr: "f-strings", ast.List: "lists", ast.Tuple: "tuples", ast.Set: "sets",
    ast.Dict: "dicts", ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
    ast.Slice: "slices",
}
_OPERATOR_SYMBOLS = {ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
                     ast.LShift: "<<", ast.RShift: ">>", ast.Invert: "~", ast.In: "in",
                     ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}


def _fail(message: str, node: ast.AST | None = None) -> ValidationFailed:
    where = f" (at column {node.col_offset + 1})" if hasattr(node, "col_offset") else ""
    return ValidationFailed(f"{FIELD}: {message}{where}", field=FIELD)


def _not_allowed(node: ast.AST) -> ValidationFailed:
    what = _FORBIDDEN.get(type(node), type(node).__name__)
    return _fail(f"{what} is not allowed; use numbers, variables, operators and the "
                 f"functions {', '.join(sorted(FUNCTIONS))}", node)


def _operator(table: Mapping[type[Any], Callable[..., Array]], op: Any, node: ast.AST
              ) -> Callable[..., Array]:
    fn = table.get(type(op))
    if fn is None:
        symbol = _OPERATOR_SYMBOLS.get(type(op), type(op).__name__)
        raise _fail(f"operator {symbol!r} is not allowed", node)
    return fn


def _compare(node: ast.Compare) -> Callable[..., Array]:
    ops = [_operator(_COMPARE, op, node) for op in node.ops]

    def chained(*values: Array) -> Array:
        result = np.ones(np.broadcast(*values).shape, dtype=bool)
        for fn, left, right in zip(ops, values, values[1:], strict=False):
            result &= fn(left, right)
        return np.where(result, 1.0, 0.0)
    return chained


def _bool_op(node: ast.BoolOp) -> Callable[..., Array]:
    is_and = isinstance(node.op, ast.And)

    def combine(*values: Array) -> Array:
        result = values[-1]
        for value in reversed(values[:-1]):  # a and (b and c), element-wise
            result = np.where(_truth(value), result, value) if is_and else \
                np.where(_truth(value), value, result)
        return result
    return combine


def _if_exp(test: Array, body: Array, orelse: Array) -> Array:
    return np.where(_truth(test), body, orelse)


def _call(node: ast.Call) -> Instruction:
    if not isinstance(node.func, ast.Name):
        raise _not_allowed(node.func)
    name = node.func.id
    if name not in FUNCTIONS:
        raise _fail(f"calling {name!r} is not allowed; functions: "
                    f"{', '.join(sorted(FUNCTIONS))}", node)
    if node.keywords:
        raise _fail(f"{name}() takes no keyword arguments", node)
    fn, low, high = FUNCTIONS[name]
    if not low <= len(node.args) <= high:
        wanted = f"{low} argument" + ("s" if low > 1 else "") if low == high else \
            f"{low} to {high} arguments"
        raise _fail(f"{name}() takes {wanted}, got {len(node.args)}", node)
    return fn, len(node.args)


def _leaf(node: ast.AST, variables: Mapping[str, Array]) -> Array:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(f"only numbers are allowed as literals, not {value!r}", node)
        try:
            number = float(value)
        except OverflowError:
            raise _fail("number literal too large for float64", node) from None
        if not math.isfinite(number):
            raise _fail("number literal too large for float64", node)
        return np.asarray(number)
    assert isinstance(node, ast.Name)
    if node.id in variables:
        return variables[node.id]
    if node.id in CONSTANTS:
        return np.asarray(CONSTANTS[node.id])
    if node.id in FUNCTIONS:
        raise _fail(f"{node.id} is a function: call it, e.g. {node.id}(x)", node)
    known = ", ".join(sorted(variables)) or "none given"
    raise _fail(f"unknown variable {node.id!r} (variables: {known}; constants: pi, e)", node)


def _visit(node: ast.AST, variables: Mapping[str, Array]) -> tuple[list[ast.AST], Instruction]:
    """Check one node; return its operands and the instruction that follows them."""
    match node:
        case ast.Constant() | ast.Name():
            return [], (None, _leaf(node, variables))
        case ast.BinOp(left=left, op=op, right=right):
            return [left, right], (_operator(_BINARY, op, node), 2)
        case ast.UnaryOp(op=op, operand=operand):
            return [operand], (_operator(_UNARY, op, node), 1)
        case ast.Compare(left=left, comparators=rest):
            return [left, *rest], (_compare(node), 1 + len(rest))
        case ast.BoolOp(values=values):
            return list(values), (_bool_op(node), len(values))
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return [test, body, orelse], (_if_exp, 3)
        case ast.Call(args=args):
            instruction = _call(node)
            return list(args), instruction
    raise _not_allowed(node)


def parse(expression: str, max_length: int) -> ast.expr:
    if len(expression) > max_length:
        raise PayloadTooLarge(f"{FIELD}: {len(expression)} characters exceed the limit of "
                              f"{max_length} (MAX_EXPRESSION_LENGTH)", field=FIELD)
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence": refused anyway
            warnings.simplefilter("ignore")
            return ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as exc:
        column = f" at column {exc.offset}" if exc.offset else ""
        detail = "" if exc.msg == "invalid syntax" else f": {exc.msg}"
        raise ValidationFailed(f"{FIELD}: invalid syntax{column}{detail}",
                               field=FIELD) from None
    except (RecursionError, MemoryError):  # the parser's own stack on pathological nesting
        raise ValidationFailed(f"{FIELD}: nested too deeply to parse",
                               field=FIELD) from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise ValidationFailed(f"{FIELD}: {exc}", field=FIELD) from None


def compile_program(tree: ast.expr, variables: Mapping[str, Array]) -> list[Instruction]:
    """Whitelist-check the tree and flatten it to postfix, without recursion."""
    program: list[Instruction] = []
    todo: list[tuple[ast.AST, int, Instruction | None]] = [(tree, 1, None)]
    nodes = 0
    while todo:
        node, depth, ready = todo.pop()
        if ready is not None:
            program.append(ready)
            continue
        nodes += 1
        if nodes > MAX_NODES:
            raise _fail(f"more than {MAX_NODES} operations and operands; simplify it")
        if depth > MAX_DEPTH:
            raise _fail(f"nested more than {MAX_DEPTH} levels deep (a chain like "
                        f"a+b+c+... nests one level per operator)", node)
        operands, instruction = _visit(node, variables)
        todo.append((node, depth, instruction))
        todo.extend((child, depth + 1, None) for child in reversed(operands))
    return program


def footprint(program: Sequence[Instruction]) -> tuple[int, int]:
    """(operations, most computed arrays alive at once) of a postfix program. Variables are
    the caller's arrays and constants are scalars: only results of operations cost memory."""
    operations = peak = live = 0
    stack: list[bool] = []  # True: a computed array
    for fn, arg in program:
        if fn is None:
            stack.append(False)
            continue
        operations += 1
        peak = max(peak, live + 1)  # the operands are alive while the result is built
        live -= sum(stack[len(stack) - arg:])
        del stack[len(stack) - arg:]
        stack.append(True)
        live += 1
    return operations, peak


def check_budget(program: Sequence[Instruction], rows: int, max_ops: int, max_bytes: int
                 ) -> None:
    operations, arrays = footprint(program)
    if operations * rows > max_ops:
        raise PayloadTooLarge(
            f"{FIELD}: {operations} operations over {rows} rows exceed the limit of "
            f"{max_ops} element operations; send fewer rows or a simpler expression",
            field=FIELD)
    if arrays * rows * 8 > max_bytes:
        raise PayloadTooLarge(
            f"{FIELD}: keeps {arrays} intermediate arrays of {rows} rows alive at once "
            f"({arrays * rows * 8 / 2**20:.0f} MB, limit {max_bytes / 2**20:.0f} MB); nest "
            f"less (fewer arguments to min/max) or send fewer rows", field=FIELD)


def run(program: Sequence[Instruction]) -> Array:
    stack: list[Array] = []
    with np.errstate(all="ignore"):  # inf/NaN are judged on the final result only
        for fn, arg in program:
            if fn is None:
                stack.append(arg)
            else:
                operands = stack[len(stack) - arg:]
                del stack[len(stack) - arg:]
                stack.append(np.asarray(fn(*operands), dtype=np.float64))
    return stack.pop()


def bind_variables(variables: Mapping[str, float | Sequence[float]], max_rows: int
                   ) -> tuple[dict[str, Array], int | None]:
    """float64 arrays by name, and the common length of the array variables (None if none)."""
    bound: dict[str, Array] = {}
    rows: int | None = None
    for name, value in sorted(variables.items()):
        where = f"variables.{name}"
        if not _IDENTIFIER.fullmatch(name) or name in RESERVED:
            why = "is a reserved function or constant name" if name in RESERVED else \
                "must be a name of letters, digits and _ (not starting with a digit)"
            raise ValidationFailed(f"{where}: {why}", field=where)
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim > 1:
            raise ValidationFailed(f"{where}: must be a number or a list of numbers",
                                   field=where)
        if arr.ndim == 1:
            if len(arr) > max_rows:
                raise PayloadTooLarge(f"{where}: {len(arr)} values exceed the limit of "
                                      f"{max_rows} (MAX_COLUMNS_ROWS)", field=where)
            if len(arr) == 0 or (rows is not None and len(arr) != rows):
                raise ValidationFailed(f"{where}: has {len(arr)} values; every array variable "
                                       f"needs the same, non-zero length"
                                       + (f" ({rows})" if rows else ""), field=where)
            rows = len(arr)
        bad = np.flatnonzero(~np.isfinite(arr.reshape(-1)))
        if bad.size:
            index = f"[{bad[0]}]" if arr.ndim else ""
            raise ValidationFailed(f"{where}{index}: not a finite number", field=where)
        bound[name] = arr
    return bound, rows


def evaluate_expression(expression: str, variables: Mapping[str, float | Sequence[float]],
                        *, max_length: int, max_rows: int, max_ops: int = MAX_ELEMENT_OPS,
                        max_bytes: int = MAX_WORKING_BYTES) -> float | Array:
    """A float when every variable is a number, else an array of the arrays' length."""
    bound, rows = bind_variables(variables, max_rows)
    program = compile_program(parse(expression, max_length), bound)
    if rows is not None:
        check_budget(program, rows, max_ops, max_bytes)
    result = run(program)
    if rows is not None:
        result = np.broadcast_to(result, (rows,))
    bad = np.flatnonzero(~np.isfinite(result.reshape(-1)))
    if bad.size:
        at = f" (first at row {bad[0]})" if rows is not None else ""
        raise ValidationFailed(
            f"{FIELD}: the result is not finite{at}: overflow, division by zero or a value "
            f"outside a function's domain (e.g. sqrt(-1), log(0))", field=FIELD)
    return float(result) if rows is None else result
