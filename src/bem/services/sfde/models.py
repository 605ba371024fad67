"""Request and response models of sfde (no NumPy here: callers import these cheaply)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# A JSON number: strict, so "1.5" and true are rejected rather than coerced; never NaN/inf.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def finite_number(value: Any) -> float | None:
    """A JSON number as a float, or None for anything else (a bool, a string, NaN or an
    infinity, an integer beyond float64)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float64
        return None
    return number if math.isfinite(number) else None


def _finite(value: Any, where: str) -> float:
    number = finite_number(value)
    if number is None:
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


# --- affinity types (POST /affinity; what each one evaluates: affinity.py) -----------------
AFFINITY_TYPES = ("structural", "cost", "energy", "mep", "spatial", "time", "fabrication")
MAX_AFFINITY_REQUESTS = 500  # components per request: its answer (~0.5 kB per type) is
# built and serialised on the event loop


def _affinity_type(value: str) -> str:
    if value not in AFFINITY_TYPES:
        raise PydanticCustomError("affinity_type", "unknown affinity type {value}; known: "
                                  "{known}", {"value": repr(value)[:80],
                                              "known": ", ".join(AFFINITY_TYPES)})
    return value


# A validator rather than a Literal: its error names the value and lists the known ones.
AffinityType = Annotated[str, AfterValidator(_affinity_type),
                         WithJsonSchema({"type": "string", "enum": list(AFFINITY_TYPES)})]


class AffinityComponent(BaseModel):
    """One component and the affinity types to evaluate for it."""

    model_config = ConfigDict(extra="forbid")

    component_id: str | None = Field(None, max_length=128, description="echoed in the answer")
    affinity_types: list[AffinityType] = Field(
        min_length=1, max_length=len(AFFINITY_TYPES), description="each at most once")
    parameters: dict[str, Number] = Field(
        default_factory=dict,
        description="numbers by name: formula parameters by their catalogue names (w, "
                    "unit_price, U, dT...) or the component's quantities by their names "
                    "(volume_m3 or volume_cm3, length_m or length_mm, density...); they win "
                    "over `attributes`")
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description="the component's recorded attributes (a graph node's attrs, an old "
                    "record's fields): read by the same names as `parameters`; a value read "
                    "must be a finite number, the others are ignored")

    @field_validator("affinity_types")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        twice = sorted({t for t in value if value.count(t) > 1})
        if twice:
            raise PydanticCustomError("value_error", "{twice} given twice; give each type "
                                      "once", {"twice": ", ".join(twice)})
        return value


class AffinityRequest(BaseModel):
    """Components to evaluate per affinity type (the old platform's design domains)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"requests": [{"component_id": "V01", "affinity_types": ["structural", "cost"],
                       "parameters": {"length_mm": 2000.0, "unit_price": 180.0},
                       "attributes": {"component_density": 2400.0, "volume_m3": 12.5}}]},
    ]})

    requests: list[AffinityComponent] = Field(
        min_length=1, max_length=MAX_AFFINITY_REQUESTS,
        description=f"at most {MAX_AFFINITY_REQUESTS} components")


class FormulaEvaluation(BaseModel):
    params: dict[str, float] = Field(description="every parameter's value, defaults included: "
                                                 "POST /evaluate with these params answers "
                                                 "these outputs")
    sources: dict[str, str] = Field(
        description="where each value came from: `parameters.<name>`, `attributes.<name>` "
                    "(converted to the parameter's unit), `default`, or a derived quantity "
                    "with its inputs, e.g. `self_weight(attributes.component_density, "
                    "parameters.volume_cm3)`")
    outputs: dict[str, float]


class AffinityEvaluation(BaseModel):
    """One affinity type of one component."""

    status: Literal["completed", "partial", "missing_parameters"] = Field(
        description="completed: every formula of the type ran; partial: some; "
                    "missing_parameters: none")
    formulas: dict[str, FormulaEvaluation] = Field(description="the formulas evaluated")
    missing: dict[str, list[str]] = Field(
        description="per formula not evaluated, what to send (each item needed; 'a or b': "
                    "either name)")
    formulas_executed: int
    cost: float | None = Field(description="the sum of the `cost` outputs of the formulas "
                                           "evaluated (material and labour); null when none")


class AffinityComponentResult(BaseModel):
    component_id: str | None
    affinity: dict[str, AffinityEvaluation] = Field(description="per affinity type requested")


class AffinityResult(BaseModel):
    results: list[AffinityComponentResult] = Field(description="one per request, in order")
    formulas_executed: int = Field(description="formula evaluations, over every component "
                                               "and type")
