"""sfde's old `/process` payloads: the old affinity types, evaluated by `POST /affinity`.

- `sfde_requests` (neon/json_transformer.py `transform_for_sfde_engine`, the old GraphQL
  server's executeDataAffinity): `{sfde_requests[{component_id, affinity_type,
  input_parameters, formula_context}], affinity_types, execution_mode}`. Each request is a
  component with one affinity type; its `input_parameters` are read as the component's
  attributes (a loose record: the old transformer sends lists such as `centroid`, which no
  formula reads).
- `components` (bem.models.legacy; the old GraphQL server's analyzeComponent): each
  component with every affinity type (default: structural, cost, energy, the old
  service's), its scalars its attributes.

Both are evaluated by `affinity.run`, what `POST /affinity` runs, its errors renamed to the
old fields. The answer is the old `results.calculations.<type>` (plus `total_cost` for
cost) and `results.formulas_executed`. `formula_context` and `execution_mode` are accepted
and not used: every formula is numeric.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from bem.errors import ValidationFailed
from bem.models.legacy import OldComponents
from bem.runtime.legacy import readdress
from bem.runtime.runtime import ServiceContext
from bem.runtime.service import OldPayload, validation_failed
from bem.services.sfde.models import AffinityRequest, AffinityResult, AffinityType

DEFAULT_TYPES = ("structural", "cost", "energy")  # what the old sfde assumed without any
# A field of the new body: requests[i], then the rest of its path.
_FIELD = re.compile(r"^requests(?:\[(\d+)\])?(?:\.(\w+))?(.*)$")


class SfdeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    component_id: str | None = Field(None, max_length=128)
    affinity_type: AffinityType
    input_parameters: dict[str, Any] = Field(
        default_factory=dict, description="formula parameters (w, unit_price, U...) or "
                                          "quantities (volume_cm3, length_mm, area_m2...) "
                                          "by name, read as the component's attributes of "
                                          "POST /affinity: a value read must be a number, "
                                          "the others (centroid, bbox) are ignored")
    formula_context: dict[str, Any] = Field(default_factory=dict, description="not used")


class SfdeRequests(BaseModel):
    """The old formula request: catalogue formulas per component and affinity type."""

    model_config = ConfigDict(extra="forbid")

    sfde_requests: list[SfdeRequest]
    affinity_types: list[AffinityType] | None = Field(
        None, description="types to answer (default: those of the requests)")
    execution_mode: str | None = Field(None, max_length=64, description="not used")


Rename = Callable[[str], str]


async def _evaluate(ctx: ServiceContext, payload: dict[str, Any], rename: Rename
                    ) -> AffinityResult:
    """What POST /affinity answers for the translated body; its errors in the old names."""
    from bem.services.sfde.affinity import run  # not in processes that only call sfde

    try:
        return await run(AffinityRequest.model_validate(payload), ctx)
    except PydanticValidationError as exc:
        raise readdress(validation_failed(exc.errors()), rename) from None
    except ValidationFailed as exc:
        raise readdress(exc, rename) from None


def _calculation(result: AffinityResult | None, kind: str) -> dict[str, Any]:
    """The old `calculations.<kind>`: its rows over every component."""
    from bem.services.sfde.affinity import RECIPES

    answers = [(c.component_id, c.affinity[kind]) for c in (result.results if result else ())
               if kind in c.affinity]
    done = [{"component_id": cid, "formula": name, "inputs": f.params, "outputs": f.outputs}
            for cid, a in answers for name, f in a.formulas.items()]
    calc = {"formulas": [s.formula for s in RECIPES[kind]], "results": done,
            "not_executed": [{"component_id": cid, "formula": name, "missing": missing}
                             for cid, a in answers for name, missing in a.missing.items()],
            "formulas_executed": len(done)}
    if kind == "cost":  # what the old clients read: null when no cost could be computed
        costs = [a.cost for _, a in answers if a.cost is not None]
        calc["total_cost"] = sum(costs) if costs else None
    return calc


def answer(result: AffinityResult | None, types: list[str]) -> dict[str, Any]:
    return {"sfde_execution_status": "completed", "affinity_types": types,
            "formulas_executed": result.formulas_executed if result else 0,
            "calculations": {kind: _calculation(result, kind) for kind in types}}


def _renamer(place: Callable[[int], str], inputs: Callable[[int], str],
             types: Callable[[int], str], whole: str) -> Rename:
    """A new field (`requests[i].attributes.x`) as the old one it was translated from."""
    def rename(name: str) -> str:
        match = _FIELD.match(name)
        if match is None:
            return name
        index, part, rest = match.groups()
        if index is None:
            return whole + rest
        i = int(index)
        if part == "attributes":
            return inputs(i) + rest
        if part == "affinity_types":
            return types(i) + rest
        return place(i) + (f".{part}" if part else "") + rest
    return rename


async def serve_requests(old: SfdeRequests, ctx: ServiceContext, _key: str
                         ) -> dict[str, Any]:
    types = list(dict.fromkeys([*(old.affinity_types or ()),
                                *(r.affinity_type for r in old.sfde_requests)]))
    if not old.sfde_requests:
        return answer(None, types)
    at = "data.sfde_requests"
    rename = _renamer(lambda i: f"{at}[{i}]", lambda i: f"{at}[{i}].input_parameters",
                      lambda i: f"{at}[{i}].affinity_type", at)
    payload = {"requests": [{"component_id": r.component_id,
                             "affinity_types": [r.affinity_type],
                             "attributes": r.input_parameters} for r in old.sfde_requests]}
    return answer(await _evaluate(ctx, payload, rename), types)


async def serve_components(old: OldComponents, ctx: ServiceContext, _key: str
                           ) -> dict[str, Any]:
    types = list(dict.fromkeys(old.affinity_types or DEFAULT_TYPES))
    picked = old.selected()
    place = [f"data.components[{i}]" for i, _ in picked]
    rename = _renamer(place.__getitem__, place.__getitem__, lambda _i: "data.affinity_types",
                      "data.components")
    payload = {"requests": [{"component_id": c.key, "affinity_types": types,
                             "attributes": c.attrs()} for _, c in picked]}
    return answer(await _evaluate(ctx, payload, rename), types)


PAYLOADS = (
    OldPayload("sfde_requests", SfdeRequests, serve_requests),
    OldPayload("components", OldComponents, serve_components),
)
