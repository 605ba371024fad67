"""The old API's data affinity analysis, planned as sfde formula evaluations.

The old `executeDataAffinity` handed each affinity type to the old SFDE container, which
answered `calculations.<type>`. Here each type is a recipe of catalogue formulas (sfde GET
/formulas); a formula's parameters come from the request's `parameters` (by the formula's
own parameter names, or as the old dimensions such as `volume_cm3`) and from the component's
attributes. A formula whose required parameters cannot all be found is not evaluated, and
the answer lists what to send. Pure planning: legacy.py evaluates the plan through sfde.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

G = 9.80665  # m/s^2, standard gravity: self-weight of a mass

# Quantity (SI unit) -> where it is read, in order: (name in the request parameters or the
# node attributes, factor to the SI unit).
SOURCES: dict[str, tuple[tuple[str, float], ...]] = {
    "density": (("density", 1.0), ("component_density", 1.0)),  # kg/m^3
    "volume": (("volume_m3", 1.0), ("volume_cm3", 1e-6)),  # m^3
    "length": (("length_m", 1.0), ("length_mm", 1e-3)),  # m
    "width": (("width_m", 1.0), ("width_mm", 1e-3)),  # m
    "height": (("height_m", 1.0), ("height_mm", 1e-3)),  # m
    "area": (("area_m2", 1.0),),  # m^2
}
# Quantities computed from others: name -> (inputs, function; None when undefined).
DERIVED: dict[str, tuple[tuple[str, ...], Callable[..., float | None]]] = {
    # The component's own weight as a dead load, kN.
    "self_weight": (("density", "volume"), lambda d, v: d * v * G / 1000),
    # ...spread along its length, kN/m (a member carrying its own weight).
    "self_weight_per_length": (("density", "volume", "length"),
                               lambda d, v, span: d * v * G / 1000 / span if span else None),
}


@dataclass(frozen=True)
class Step:
    formula: str
    quantities: Mapping[str, str] = field(default_factory=dict)  # parameter -> quantity


RECIPES: dict[str, tuple[Step, ...]] = {
    "structural": (Step("lrfd_combinations", {"D": "self_weight"}),
                   Step("simple_beam_udl", {"w": "self_weight_per_length", "L": "length"})),
    "cost": (Step("material_cost", {"quantity": "volume"}), Step("labour_cost")),
    "energy": (Step("hvac_load", {"A": "area"}),),
    "mep": (Step("hvac_load", {"A": "area"}),),  # the mechanical load: HVAC sizing
    "spatial": (Step("prism_geometry", {"length": "length", "width": "width",
                                        "height": "height", "density": "density"}),),
    "time": (Step("pert_duration"),),
}
AFFINITY_TYPES = tuple(RECIPES)


@dataclass
class Plan:
    """What to evaluate for one affinity type, and what could not be."""

    evaluations: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)


class BadParameter(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def numbers(parameters: Any) -> dict[str, float]:
    """The request's parameters, checked: an object of finite numbers."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadParameter("", "must be an object of numbers by name")
    for name, value in parameters.items():
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise BadParameter(name, f"must be a finite number, not {value!r}")
    return {k: float(v) for k, v in parameters.items()}


def _quantity(name: str, given: dict[str, float], attrs: Mapping[str, Any]) -> float | None:
    if name in DERIVED:
        inputs, fn = DERIVED[name]
        values = [_quantity(i, given, attrs) for i in inputs]
        return None if None in values else fn(*values)
    for where in (given, attrs):
        for source, factor in SOURCES[name]:
            value = where.get(source)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value) * factor
    return None


def _missing(quantity: str, given: dict[str, float], attrs: Mapping[str, Any]) -> list[str]:
    """What a client sends to supply a quantity that cannot be found."""
    if quantity not in DERIVED:
        return [" or ".join(source for source, _ in SOURCES[quantity])]
    parts = [m for i in DERIVED[quantity][0] if _quantity(i, given, attrs) is None
             for m in _missing(i, given, attrs)]
    return parts or [f"{quantity} (undefined for the values given, e.g. a zero length)"]


def plan(affinity: str, given: dict[str, float], attrs: Mapping[str, Any],
         catalogue: Mapping[str, Mapping[str, float | None]]) -> Plan:
    """The evaluations of one affinity type. `catalogue`: formula -> parameter -> default
    (None = required)."""
    out = Plan()
    for step in RECIPES[affinity]:
        params: dict[str, float] = {}
        missing: list[str] = []
        for param, default in catalogue[step.formula].items():
            if param in step.quantities:
                value = _quantity(step.quantities[param], given, attrs)
                if value is None:
                    missing.extend(n for n in _missing(step.quantities[param], given, attrs)
                                   if n not in missing)
                    continue
                params[param] = value
            elif param in given:
                params[param] = given[param]
            elif default is None:
                missing.append(param)
        if missing:
            out.missing[step.formula] = missing
        else:
            out.evaluations.append((step.formula, params))
    return out


def status_of(p: Plan) -> str:
    if not p.evaluations:
        return "missing_parameters"
    return "partial" if p.missing else "completed"
