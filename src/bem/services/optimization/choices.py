"""From a /select request to the MILP arrays, checking every cross-reference on the way.

Weights: the weight of criterion c for component i is `weights[c]` when the request gives
it, else `agent_coefficients[i]["<c>_weight_preference"]`. Every criterion an option scores
must have a weight, and every option of a component must score the same criteria: a
missing number is an error naming where it is missing, never a silent zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bem.errors import PayloadTooLarge
from bem.services.optimization.errors import Problems
from bem.services.optimization.models import SelectConstraint, SelectRequest
from bem.services.optimization.selection import Row, SelectionProblem

MAX_VARIABLES = 200_000  # options in one request: ~2 MB of arrays, far beyond a real project
PREFERENCE = "{}_weight_preference"


@dataclass(frozen=True)
class Layout:
    """What the arrays mean: names to report the answer in the request's own terms."""

    components: list[str]
    options: list[list[str]]
    weights: dict[str, dict[str, float]]
    constraint_names: list[str]


def build_selection(body: SelectRequest, time_limit: float) -> tuple[SelectionProblem, Layout]:
    total = sum(len(c.options) for c in body.components)
    if total > MAX_VARIABLES:
        raise PayloadTooLarge(f"components: {total} options in all exceed the limit of "
                              f"{MAX_VARIABLES}", field="components")
    problems = Problems()
    index = _index(body, problems)
    weights = {c.id: _weights(body, i, problems) for i, c in enumerate(body.components)}
    problems.raise_any()
    values, costs, starts = [], [], []
    for c in body.components:
        starts.append(len(values))
        w = weights[c.id]
        for o in c.options:
            values.append(sum(w[k] * s for k, s in o.scores.items()))
            costs.append(o.cost)
    rows = tuple(_row(body, k, con, index, problems) for k, con in enumerate(body.constraints))
    problems.raise_any()
    problem = SelectionProblem(
        values=np.array(values, dtype=float), costs=np.array(costs, dtype=float),
        starts=np.array(starts, dtype=np.int64), budget=body.budget, rows=rows,
        time_limit=time_limit, max_nodes=body.max_nodes, mip_gap=body.mip_gap)
    layout = Layout(components=[c.id for c in body.components],
                    options=[[o.id for o in c.options] for c in body.components],
                    weights=weights,
                    constraint_names=[con.name or f"constraints[{k}]"
                                      for k, con in enumerate(body.constraints)])
    return problem, layout


def _index(body: SelectRequest, problems: Problems) -> dict[tuple[str, str], int]:
    """(component id, option id) -> variable index; duplicates are errors."""
    index: dict[tuple[str, str], int] = {}
    seen: set[str] = set()
    for i, c in enumerate(body.components):
        if c.id in seen:
            problems.add(f"components[{i}].id", f"duplicate component id {c.id!r}")
            continue
        seen.add(c.id)
        for j, o in enumerate(c.options):
            if (c.id, o.id) in index:
                problems.add(f"components[{i}].options[{j}].id",
                             f"duplicate option id {o.id!r} in component {c.id!r}")
            index[(c.id, o.id)] = len(index)
    return index


def _weights(body: SelectRequest, i: int, problems: Problems) -> dict[str, float]:
    c = body.components[i]
    criteria = sorted({k for o in c.options for k in o.scores})
    for j, o in enumerate(c.options):
        for k in criteria:
            if k not in o.scores:
                problems.add(f"components[{i}].options[{j}].scores.{k}",
                             f"missing; other options of {c.id!r} are scored on {k!r}")
    coefficients = body.agent_coefficients.get(c.id, {})
    weights = {}
    for k in criteria:
        if k in body.weights:
            weights[k] = body.weights[k]
        elif PREFERENCE.format(k) in coefficients:
            weights[k] = coefficients[PREFERENCE.format(k)]
        else:
            problems.add(f"agent_coefficients.{c.id}.{PREFERENCE.format(k)}",
                         f"no weight for criterion {k!r} of component {c.id!r} (give it here "
                         f"or as weights.{k})")
    return weights


def _row(body: SelectRequest, k: int, con: SelectConstraint,
         index: dict[tuple[str, str], int], problems: Problems) -> Row:
    where = f"constraints[{k}]"
    columns: list[int] = []
    coefficients: list[float] = []
    if con.terms is not None:
        for t, term in enumerate(con.terms):
            if (term.component, term.option) not in index:
                field = "component" if not any(c.id == term.component for c in body.components) \
                    else "option"
                problems.add(f"{where}.terms[{t}].{field}",
                             f"no option {term.option!r} of component {term.component!r}")
                continue
            columns.append(index[(term.component, term.option)])
            coefficients.append(term.coefficient)
    else:
        _attribute_terms(body, k, con, index, problems, columns, coefficients)
    return Row(columns=np.array(columns, dtype=np.int64),
               coefficients=np.array(coefficients, dtype=float),
               lower=-np.inf if con.lower is None else con.lower,
               upper=np.inf if con.upper is None else con.upper)


def _attribute_terms(body: SelectRequest, k: int, con: SelectConstraint,
                     index: dict[tuple[str, str], int], problems: Problems,
                     columns: list[int], coefficients: list[float]) -> None:
    ids = {c.id: i for i, c in enumerate(body.components)}
    wanted = con.components if con.components is not None else list(ids)
    attribute = str(con.attribute)
    for m, cid in enumerate(wanted):
        if cid not in ids:
            problems.add(f"constraints[{k}].components[{m}]", f"unknown component {cid!r}")
            continue
        i = ids[cid]
        for j, o in enumerate(body.components[i].options):
            if attribute not in o.attributes:
                problems.add(f"components[{i}].options[{j}].attributes.{attribute}",
                             f"missing; constraints[{k}] sums {attribute!r}")
                continue
            columns.append(index[(cid, o.id)])
            coefficients.append(o.attributes[attribute])
