"""GraphQL types of the formula engine (sfde): the catalogue and evaluations."""

from __future__ import annotations

from typing import Any

import strawberry

from bem.services.graphql.convert import jsonable, pick


@strawberry.type
class FormulaParameter:
    name: str
    unit: str
    description: str
    min: float = strawberry.field(description="smallest accepted value (inclusive)")
    max: float = strawberry.field(description="largest accepted value (inclusive)")
    default: float | None = strawberry.field(description="used when omitted; null = required")


@strawberry.type
class FormulaOutput:
    name: str
    unit: str
    description: str


@strawberry.type(description="A named engineering formula with units and its source.")
class Formula:
    name: str
    title: str
    description: str
    domain: str
    reference: str
    parameters: list[FormulaParameter]
    outputs: list[FormulaOutput]


def formula_from(data: dict[str, Any]) -> Formula:
    return Formula(name=data["name"], title=data["title"], description=data["description"],
                   domain=data["domain"], reference=data["reference"],
                   parameters=[pick(FormulaParameter, p) for p in data["parameters"]],
                   outputs=[pick(FormulaOutput, o) for o in data["outputs"]])


def formulas_from(answer: Any) -> list[Formula]:
    return [formula_from(f) for f in jsonable(answer)["formulas"]]


@strawberry.type(description="One output of an evaluation: `value` for one row, `values` "
                             "for columns.")
class OutputValue:
    name: str
    value: float | None
    values: list[float] | None


@strawberry.type
class Evaluation:
    formula: str
    rows: int | None = strawberry.field(description="rows evaluated; null for one row")
    outputs: list[OutputValue]


def evaluation_from(answer: Any) -> Evaluation:
    data = jsonable(answer)
    outputs = [OutputValue(name=k, value=None, values=v) if isinstance(v, list)
               else OutputValue(name=k, value=v, values=None)
               for k, v in data["outputs"].items()]
    return Evaluation(formula=data["formula"], rows=data["rows"], outputs=outputs)


@strawberry.type(description="`value` when every variable is a number, `values` when one is "
                             "an array.")
class ExpressionValue:
    value: float | None
    values: list[float] | None
