"""Request and response models of optimization (no NumPy/SciPy here)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Finite = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
MAX_CONSTRAINTS = 1000


def _check_bounds(lower: float | None, upper: float | None, need_one: bool = True) -> None:
    if need_one and lower is None and upper is None:
        raise ValueError("give lower, upper or both")
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"lower ({lower:g}) is above upper ({upper:g})")


# --- POST /select -----------------------------------------------------------------------------
class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Name
    cost: Finite = Field(0.0, ge=0, description="counts against the budget")
    scores: dict[Name, Finite] = Field(
        default_factory=dict, description="criterion -> score, higher is better (e.g. "
                                          "material, cost, time)")
    attributes: dict[Name, Finite] = Field(
        default_factory=dict, description="quantities for extra constraints (e.g. co2_kg)")


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Name
    options: list[Option] = Field(min_length=1, description="exactly one will be chosen")


class Term(BaseModel):
    model_config = ConfigDict(extra="forbid")

    component: Name
    option: Name
    coefficient: Finite = 1.0


class SelectConstraint(BaseModel):
    """lower <= expression <= upper, the expression given by `attribute` or by `terms`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "embodied carbon", "attribute": "co2_kg", "upper": 5000},
        {"name": "not both steel", "terms": [
            {"component": "V01", "option": "steel"}, {"component": "V02", "option": "steel"}],
         "upper": 1}]})

    name: str | None = Field(None, max_length=128)
    attribute: Name | None = Field(None, description="sum of this option attribute over the "
                                                     "chosen options")
    components: list[Name] | None = Field(None, min_length=1, description="with `attribute`: "
                                          "sum over these components only (default: all)")
    terms: list[Term] | None = Field(None, min_length=1, max_length=100_000,
                                     description="sum of coefficient x [option chosen]")
    lower: Finite | None = None
    upper: Finite | None = None

    @model_validator(mode="after")
    def _shape(self) -> SelectConstraint:
        if (self.attribute is None) == (self.terms is None):
            raise ValueError("give exactly one of attribute or terms")
        if self.components is not None and self.attribute is None:
            raise ValueError("components restricts an attribute sum; it needs attribute")
        _check_bounds(self.lower, self.upper)
        return self


class SelectRequest(BaseModel):
    """Choose one option per component, maximising the weighted score."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "components": [
            {"id": "V01", "options": [
                {"id": "concrete", "cost": 42000, "scores": {"material": 0.7, "cost": 0.8}},
                {"id": "steel", "cost": 61000, "scores": {"material": 0.9, "cost": 0.5}}]},
            {"id": "V02", "options": [
                {"id": "timber", "cost": 30000, "scores": {"material": 0.6, "cost": 0.9}},
                {"id": "steel", "cost": 45000, "scores": {"material": 0.9, "cost": 0.6}}]}],
        "budget": 90000,
        "agent_coefficients": {
            "V01": {"material_weight_preference": 0.6, "cost_weight_preference": 0.3},
            "V02": {"material_weight_preference": 0.4, "cost_weight_preference": 0.4}}}]})

    components: list[Component] = Field(min_length=1)
    budget: Finite | None = Field(None, ge=0, description="upper bound on the total cost")
    agent_coefficients: dict[Name, dict[Name, Finite]] = Field(
        default_factory=dict, description="per component id, `<criterion>_weight_preference` "
                                          "gives the weight of each criterion (the project "
                                          "graph's agent_coefficients)")
    weights: dict[Name, Finite] = Field(
        default_factory=dict, description="criterion -> weight for every component; "
                                          "overrides agent_coefficients")
    constraints: list[SelectConstraint] = Field(default_factory=list,
                                                max_length=MAX_CONSTRAINTS)
    time_limit: Finite = Field(10.0, gt=0, description="seconds; at most REQUEST_TIMEOUT")
    max_nodes: int | None = Field(None, ge=1, description="branch-and-bound node limit")
    mip_gap: Finite = Field(1e-4, ge=0, le=1, description="relative optimality gap at which "
                                                          "the solver may stop (HiGHS default)")


class Chosen(BaseModel):
    component: str
    option: str
    option_index: int
    cost: float
    score: float = Field(description="weighted score of the chosen option")


class ConstraintValue(BaseModel):
    name: str
    value: float
    lower: float | None
    upper: float | None


class SelectResult(BaseModel):
    status: Literal["optimal", "time_limit", "iteration_limit"] = Field(
        description="optimal (within mip_gap), or the best selection found before a limit")
    optimal: bool
    objective: float = Field(description="total weighted score of the selection")
    bound: float | None = Field(description="proven upper bound on the best possible score")
    mip_gap: float | None
    total_cost: float
    budget: float | None
    selection: list[Chosen]
    constraints: list[ConstraintValue]
    weights: dict[str, dict[str, float]] = Field(description="weight used per component and "
                                                             "criterion")
    nodes: int | None = Field(description="branch-and-bound nodes explored")
    solve_seconds: float
    message: str


# --- POST /parameters -------------------------------------------------------------------------
class Variable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="a parameter of the objective formula")
    lower: Finite | None = Field(None, description="default: the parameter's minimum")
    upper: Finite | None = Field(None, description="default: the parameter's maximum")
    initial: Finite | None = Field(None, description="default: the parameter's default if "
                                                     "within bounds, else the midpoint")

    @model_validator(mode="after")
    def _order(self) -> Variable:
        _check_bounds(self.lower, self.upper, need_one=False)
        return self


class ParameterConstraint(BaseModel):
    """lower <= value <= upper, the value an sfde formula output or a safe expression."""

    model_config = ConfigDict(extra="forbid")

    formula: Name | None = None
    output: Name | None = Field(None, description="with formula: which output")
    expression: str | None = Field(None, min_length=1, description="over the variables and "
                                                                   "fixed values")
    lower: Finite | None = None
    upper: Finite | None = None

    @model_validator(mode="after")
    def _shape(self) -> ParameterConstraint:
        if (self.formula is None) == (self.expression is None):
            raise ValueError("give exactly one of formula (with output) or expression")
        if self.formula is not None and self.output is None:
            raise ValueError("output: required with formula")
        if self.expression is not None and self.output is not None:
            raise ValueError("output: only with formula")
        _check_bounds(self.lower, self.upper)
        return self


class ParametersRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "formula": "rectangular_section", "output": "area", "sense": "minimize",
        "variables": [{"name": "h", "lower": 50, "upper": 1000}],
        "fixed": {"b": 200, "M": 50},
        "constraints": [{"expression": "6 * M * 1e6 / (b * h**2)", "upper": 165}]}]})

    formula: Name = Field(description="an sfde formula (GET /formulas on sfde)")
    output: Name = Field(description="the output to minimise or maximise")
    sense: Literal["minimize", "maximize"] = "minimize"
    variables: list[Variable] = Field(min_length=1, max_length=50)
    fixed: dict[Name, Finite] = Field(
        default_factory=dict, description="values of the other formula parameters (else their "
                                          "defaults) and of names used by expressions")
    constraints: list[ParameterConstraint] = Field(default_factory=list, max_length=100)
    max_iterations: int = Field(200, ge=1, le=10_000)
    time_limit: Finite = Field(20.0, gt=0, description="seconds; at most REQUEST_TIMEOUT")
    tolerance: Finite = Field(1e-8, gt=0, le=0.1, description="SLSQP's ftol on the scaled "
                                                              "objective")


class ParameterConstraintValue(BaseModel):
    constraint: str = Field(description="formula.output or the expression")
    value: float
    lower: float | None
    upper: float | None
    active: bool = Field(description="at a bound (within 1e-6 relative)")


class ParametersResult(BaseModel):
    status: Literal["optimal", "time_limit", "iteration_limit"]
    optimal: bool
    formula: str
    output: str
    sense: str
    objective: float = Field(description="the output's value at the answer")
    variables: dict[str, float] = Field(description="the answer")
    outputs: dict[str, float] = Field(description="every output of the formula at the answer")
    constraints: list[ParameterConstraintValue]
    iterations: int
    evaluations: int = Field(description="points evaluated (gradient points included)")
    sfde_calls: int = Field(description="calls to sfde, each evaluating a batch of points")
    solve_seconds: float
    message: str
