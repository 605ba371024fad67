"""Request and response models of sfde (no NumPy here: callers import these cheaply)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

# A JSON number: strict, so "1.5" and true are rejected rather than coerced; never NaN/inf.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _finite(value: Any, where: str) -> float:
    number = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float64
            number = None
    if number is None or not math.isfinite(number):
        raise PydanticCustomError("number_type",
                                  "must be a finite number or a list of them{where}",
                                  {"where": where})
    return number


def _number_or_numbers(value: Any) -> float | list[float]:
    if isinstance(value, list):
        return [_finite(v, f" (item {i} is {v!r})") for i, v in enumerate(value)]
    return _finite(value, f" (got {value!r})"[:80])


# A plain validator rather than `Number | list[Number]`: a union would name its branches in
# the error's field path ("variables.x.list[float][1]").
Variable = Annotated[float | list[float], PlainValidator(
    _number_or_numbers, json_schema_input_type=float | list[float])]


class ParameterInfo(BaseModel):
    name: str
    unit: str
    description: str
    min: float = Field(description="smallest accepted value (inclusive)")
    max: float = Field(description="largest accepted value (inclusive)")
    default: float | None = Field(description="value used when omitted; null = required")


class OutputInfo(BaseModel):
    name: str
    unit: str
    description: str


class FormulaInfo(BaseModel):
    """A formula of the catalogue: what it computes, its equation, units and source."""

    name: str
    title: str
    description: str = Field(description="what it computes and the equation")
    domain: str = Field(description="structural, energy, cost, time, finance, fabrication, "
                                    "site")
    reference: str = Field(description="source: standard, textbook, or project-defined")
    parameters: list[ParameterInfo]
    outputs: list[OutputInfo]


class FormulaList(BaseModel):
    formulas: list[FormulaInfo]


class EvaluateRequest(BaseModel):
    """One row (`params`) or many rows at once (`columns`), not both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"formula": "simple_beam_udl", "params": {"w": 10.0, "L": 6.0}},
        {"formula": "simple_beam_udl", "columns": {"w": [10.0, 12.5], "L": [6.0, 4.0]}},
    ]})

    formula: str = Field(min_length=1, max_length=64, description="a name from GET /formulas")
    params: dict[str, Number] | None = Field(
        None, description="one row: a number per parameter (those with a default may be "
                          "omitted)")
    columns: dict[str, list[Number]] | None = Field(
        None, description="many rows: an equal-length array per parameter, evaluated at once "
                          "(at most MAX_COLUMNS_ROWS rows)")

    @model_validator(mode="after")
    def _one_form(self) -> EvaluateRequest:
        if (self.params is None) == (self.columns is None):
            raise ValueError("give exactly one of params (one row) or columns (arrays)")
        return self


class EvaluateResult(BaseModel):
    formula: str
    rows: int | None = Field(description="number of rows for columns; null for params")
    outputs: dict[str, float] | dict[str, list[float]] = Field(
        description="a number per output for params, an array per output for columns")


class ExpressionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"expression": "w * L**2 / 8", "variables": {"w": 10.0, "L": [4.0, 6.0, 8.0]}},
    ]})

    expression: str = Field(
        min_length=1, description="arithmetic over the variables: numbers, + - * / // % **, "
                                  "comparisons, and/or/not, `a if c else b`, pi, e and the "
                                  "functions listed in the service description (at most "
                                  "MAX_EXPRESSION_LENGTH characters)")
    variables: dict[str, Variable] = Field(
        default_factory=dict, max_length=256,
        description="numbers, or equal-length arrays to evaluate element-wise")


class ExpressionResult(BaseModel):
    value: float | None = Field(description="the result when every variable is a number")
    values: list[float] | None = Field(description="the results when a variable is an array")
