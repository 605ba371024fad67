"""How a formula is declared and evaluated: parameters with units and bounds, vectorised.

A `Formula` pairs documentation (title, equation, units, source) with one NumPy function
that takes one float64 array per parameter (all of the same length) and returns one array
per output. `Formula.evaluate` is the single entry point: it fills defaults, checks every
value against its bounds and the formula's own consistency checks, runs the function once
over all rows and rejects non-finite results, raising `ValidationFailed` that names the
offending field (`params.<name>` for one row, `columns.<name>[i]` for columns).

Pure NumPy over plain data: importable by any service or pool worker, testable alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bem.errors import ValidationFailed

Array = np.ndarray[Any, np.dtype[np.float64]]
Columns = Mapping[str, Array]
# A consistency check: (parameter to blame, boolean mask of bad rows, what is wrong).
Problem = tuple[str, Array, str]
Check = Callable[[Columns], Sequence[Problem]]



@dataclass(frozen=True)
class Parameter:
    """An input: SI-style unit, plausible bounds (inclusive); `default` makes it optional."""

    name: str
    unit: str
    description: str
    min: float
    max: float
    default: float | None = None


@dataclass(frozen=True)
class Output:
    name: str
    unit: str
    description: str


@dataclass(frozen=True)
class Formula:
    name: str
    title: str
    description: str  # what it computes and the equation
    domain: str
    reference: str  # the source (standard, textbook) or "project-defined"
    parameters: tuple[Parameter, ...]
    outputs: tuple[Output, ...]
    fn: Callable[..., dict[str, Array]]
    checks: tuple[Check, ...] = field(default=())

    def info(self) -> dict[str, Any]:
        """The FormulaInfo shape served by GET /formulas."""
        return {
            "name": self.name, "title": self.title, "description": self.description,
            "domain": self.domain, "reference": self.reference,
            "parameters": [asdict(p) for p in self.parameters],
            "outputs": [asdict(o) for o in self.outputs],
        }

    def evaluate(self, values: Mapping[str, Sequence[float] | Array], *, prefix: str = "columns",
                 indexed: bool = True) -> dict[str, Array]:
        """Validate and evaluate `values` (one sequence per parameter, equal lengths).

        `prefix` and `indexed` only shape error fields: `columns.L[3]`, or `params.L` for a
        single row given as `params`.
        """
        columns = self._columns(values, prefix)
        rows = len(next(iter(columns.values())))
        problems = list(self._out_of_bounds(columns))
        # Overflow and 0/0 become inf/NaN instead of warnings: checks look at signs, and a
        # non-finite output is reported below per row.
        with np.errstate(all="ignore"):
            if not problems:
                problems = [p for check in self.checks for p in check(columns) if p[1].any()]
            if problems:
                raise _failed(problems, columns, prefix, indexed)
            raw = self.fn(**columns)
        outputs = {}
        for output in self.outputs:
            arr = np.asarray(raw[output.name], dtype=np.float64)
            if arr.shape != (rows,):  # an output that does not depend on any column
                arr = np.full(rows, arr)
            bad = ~np.isfinite(arr)
            if bad.any():
                row = int(np.argmax(bad))
                where = f"{prefix}[{row}]" if indexed else prefix
                raise ValidationFailed(f"{where}: the result {output.name} is not finite for "
                                       f"this input (float64 overflow); choose smaller values",
                                       field=where)
            outputs[output.name] = arr
        return outputs

    def _columns(self, values: Mapping[str, Sequence[float] | Array], prefix: str
                 ) -> dict[str, Array]:
        known = {p.name for p in self.parameters}
        unknown = sorted(set(values) - known)
        missing = [p.name for p in self.parameters if p.default is None and p.name not in values]
        details = [_detail(f"{prefix}.{n}", f"unknown parameter of {self.name} (parameters: "
                                            f"{', '.join(p.name for p in self.parameters)})",
                           "unknown") for n in unknown]
        details += [_detail(f"{prefix}.{n}", f"required by {self.name}", "missing")
                    for n in missing]
        if details:
            raise _error(details)
        given = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in values.items()}
        lengths = {k: len(v) for k, v in given.items()}
        rows = max(lengths.values(), default=0)
        if rows == 0:
            raise ValidationFailed(f"{prefix}: give at least one value", field=prefix)
        for name, n in sorted(lengths.items()):
            if n != rows:
                raise ValidationFailed(
                    f"{prefix}.{name}: has {n} values but other columns have {rows}; every "
                    f"column must have the same length", field=f"{prefix}.{name}")
        return {p.name: given[p.name] if p.name in given else np.full(rows, p.default)
                for p in self.parameters}

    def _out_of_bounds(self, columns: Columns) -> list[Problem]:
        problems = []
        for p in self.parameters:
            arr = columns[p.name]
            finite = np.isfinite(arr)
            low, high = finite & (arr < p.min), finite & (arr > p.max)
            if not finite.all():
                problems.append((p.name, ~finite, "not a finite number"))
            if low.any():
                problems.append((p.name, low, f"below the minimum {p.min:g} {p.unit}"))
            if high.any():
                problems.append((p.name, high, f"above the maximum {p.max:g} {p.unit}"))
        return problems


def _detail(field_name: str, message: str, kind: str) -> dict[str, Any]:
    return {"field": field_name, "message": message, "type": kind}


def _error(details: list[dict[str, Any]]) -> ValidationFailed:
    return ValidationFailed.naming(details)


def _failed(problems: list[Problem], columns: Columns, prefix: str, indexed: bool
            ) -> ValidationFailed:
    """One error naming, for each problem, the first bad row (and how many rows are bad)."""
    details = []
    for name, mask, what in problems:
        row = int(np.argmax(mask))
        count = int(mask.sum())
        where = f"{prefix}.{name}[{row}]" if indexed else f"{prefix}.{name}"
        text = f"{columns[name][row]:g} is {what}"
        if indexed and count > 1:
            text += f" ({count} rows affected)"
        details.append(_detail(where, text, "value_error"))
    return _error(details)


def whole_number(name: str) -> Check:
    """A check that a parameter holds whole numbers (counts of periods, items)."""
    def check(columns: Columns) -> list[Problem]:
        arr = columns[name]
        return [(name, arr != np.floor(arr), "not a whole number")]
    return check
