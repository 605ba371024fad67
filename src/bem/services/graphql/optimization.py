"""GraphQL types of the optimisation service: option selection (MILP) and parameter
optimisation of an sfde formula. Problems go in as JSON (the service's request bodies, which
it validates field by field); the stable parts of the answers are typed, the whole answer is
carried in `result`."""

from __future__ import annotations

from typing import Any

import strawberry

from bem.services.graphql.convert import jsonable, pick
from bem.services.graphql.types import JSON


@strawberry.type
class ChosenOption:
    component: str
    option: str
    cost: float
    score: float = strawberry.field(description="weighted score of the chosen option")


@strawberry.type(description="One option per component, maximising the weighted score.")
class Selection:
    status: str = strawberry.field(description="optimal | time_limit | iteration_limit")
    optimal: bool
    objective: float = strawberry.field(description="total weighted score")
    total_cost: float
    budget: float | None
    selection: list[ChosenOption]
    message: str
    result: JSON = strawberry.field(description="the service's whole answer")


def selection_from(answer: Any) -> Selection:
    data = jsonable(answer)
    return Selection(status=data["status"], optimal=data["optimal"],
                     objective=data["objective"], total_cost=data["total_cost"],
                     budget=data.get("budget"),
                     selection=[pick(ChosenOption, c) for c in data["selection"]],
                     message=data["message"], result=data)


@strawberry.type(description="The best values of a formula's parameters.")
class ParameterOptimum:
    status: str = strawberry.field(description="optimal | time_limit | iteration_limit")
    optimal: bool
    formula: str
    output: str
    sense: str
    objective: float = strawberry.field(description="the output's value at the answer")
    variables: JSON = strawberry.field(description="variable -> value at the answer")
    message: str
    result: JSON = strawberry.field(description="the service's whole answer")


def optimum_from(answer: Any) -> ParameterOptimum:
    data = jsonable(answer)
    return pick(ParameterOptimum, {**data, "result": data})  # type: ignore[no-any-return]
