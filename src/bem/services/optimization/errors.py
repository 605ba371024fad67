"""Outcomes without an answer, as 422 errors with their own codes, and input checks.

A solve that yields a usable answer (optimal, or the best feasible answer found before a
limit) is a 200 whose `status` says which. One that yields none is a 422 whose `error` code
names the outcome and whose `field` names what to change. Over HTTP a peer re-raises these
as ValidationFailed (same status); the code stays in the body.
"""

from __future__ import annotations

from typing import Any

from bem.errors import ValidationFailed


class Infeasible(ValidationFailed):
    code = "infeasible"


class Unbounded(ValidationFailed):
    code = "unbounded"


class IterationLimit(ValidationFailed):
    code = "iteration_limit"


class TimeLimit(ValidationFailed):
    code = "time_limit"


class SolverFailed(ValidationFailed):
    code = "solver_failed"


OUTCOME_ERRORS: dict[str, type[ValidationFailed]] = {
    "infeasible": Infeasible, "unbounded": Unbounded, "iteration_limit": IterationLimit,
    "time_limit": TimeLimit, "solver_failed": SolverFailed}


class Problems:
    """Collects every input problem, then raises one 422 naming them all."""

    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []

    def add(self, field: str, message: str) -> None:
        self.details.append({"field": field, "message": message, "type": "value_error"})

    def raise_any(self) -> None:
        if self.details:
            raise ValidationFailed.naming(self.details)
