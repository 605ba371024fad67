"""functor_types' old `/process` payloads: validation and compatibility (POST /validate,
POST /compatibility), for real.

- `functor_calculations` (neon/json_transformer.py `transform_for_functor_types`):
  `{spatial_calculations[{component_id, centroid[3], bbox[3]}],
  aggregation_calculations[{component_id, volume, area, dimensions[3]}], functor_type,
  execution_mode}`. The old service computed centroid distances and volume sums; those
  calculations now belong to the functor types that run them, so each spatial entry is
  validated as a component of `functor_type` (the old `stateless` is `stateless_spatial`)
  and each aggregation entry as an `aggregator` component, their values as the attributes
  they came from (centroid -> centroid_x/y/z, bbox -> bbox_x/y/z_mm, volume -> volume_cm3,
  area -> area_m2, dimensions -> length/width/height_mm). The compatibility answer says in
  which phases of `execution_mode` the type may run (`cross_phase`: alpha, beta, gamma) and,
  when both lists are given, whether the spatial results may feed the aggregation.
- `components` (bem.models.legacy): each component validated as the node it becomes.

Report paths name the old list: `spatial_calculations[0].attrs.component_density`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bem.errors import BemError
from bem.models.legacy import OldComponents, invalid
from bem.runtime.legacy import readdress
from bem.runtime.runtime import ServiceContext
from bem.runtime.service import OldPayload
from bem.services.functor_types.models import CompatibilityResult, ValidateResult


@dataclass(frozen=True)
class Own:
    """The service's own operations the old payloads are served by (handed in by the API
    module, which imports this one)."""

    validate: Callable[..., Awaitable[ValidateResult]]
    compatibility: Callable[..., Awaitable[CompatibilityResult]]


OLD_TYPES = {"stateless": "stateless_spatial"}  # old functor_type -> registry type
AGGREGATOR = "aggregator"  # the registry type of the aggregation calculations
MODES: dict[str, tuple[str, ...]] = {"cross_phase": ("alpha", "beta", "gamma"),
                                     "alpha": ("alpha",), "beta": ("beta",),
                                     "gamma": ("gamma",)}
Triple = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]],
                   Field(min_length=3, max_length=3)]
_PATH = re.compile(r"^components\[(\d+)\]")


class SpatialCalculation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    component_id: str | None = Field(None, min_length=1, max_length=128)
    centroid: Triple = Field(description="x, y, z: attrs centroid_x, centroid_y, centroid_z")
    bbox: Triple = Field(description="mm: attrs bbox_x_mm, bbox_y_mm, bbox_z_mm")


class AggregationCalculation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    component_id: str | None = Field(None, min_length=1, max_length=128)
    volume: float = Field(allow_inf_nan=False, description="cm3: attrs volume_cm3")
    area: float = Field(allow_inf_nan=False, description="m2: attrs area_m2")
    dimensions: Triple = Field(description="mm: attrs length_mm, width_mm, height_mm")


class FunctorCalculations(BaseModel):
    """The old functor-type calculations: validated against the registry, with the
    compatibility of the types and phases they imply."""

    model_config = ConfigDict(extra="forbid")

    spatial_calculations: list[SpatialCalculation] = Field(default_factory=list)
    aggregation_calculations: list[AggregationCalculation] = Field(default_factory=list)
    functor_type: str = Field("stateless", min_length=1, max_length=128,
                              description="the spatial entries' type: stateless (the old "
                                          "name of stateless_spatial) or a registry type")
    execution_mode: str = Field("cross_phase", description=f"one of {', '.join(MODES)}")

    @field_validator("execution_mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in MODES:
            raise invalid(f"unknown execution mode {value!r}; known: {', '.join(MODES)} "
                          f"(the phases the functor type is checked for)")
        return value


def spatial_node(c: SpatialCalculation, type_name: str) -> dict[str, Any]:
    (x, y, z), (bx, by, bz) = c.centroid, c.bbox
    return _node(c.component_id, type_name, {"centroid_x": x, "centroid_y": y,
                                             "centroid_z": z, "bbox_x_mm": bx,
                                             "bbox_y_mm": by, "bbox_z_mm": bz})


def aggregation_node(c: AggregationCalculation) -> dict[str, Any]:
    length, width, height = c.dimensions
    return _node(c.component_id, AGGREGATOR, {"volume_cm3": c.volume, "area_m2": c.area,
                                              "length_mm": length, "width_mm": width,
                                              "height_mm": height})


def _node(ident: str | None, type_name: str, attrs: dict[str, float]) -> dict[str, Any]:
    node: dict[str, Any] = {"functor_type": type_name, "attrs": attrs}
    if ident is not None:  # a missing id is the validation's to report
        node["id"] = ident
    return node


def relabel(report: dict[str, Any], name: str, index: Callable[[int], int] = int
            ) -> dict[str, Any]:
    """A ValidateResult whose paths `components[k]...` name the old list `name[i]...`."""
    def path(p: str) -> str:
        return _PATH.sub(lambda m: f"{name}[{index(int(m.group(1)))}]", p)

    for component in report["components"]:
        component["index"] = index(component["index"])
        for item in (*component["errors"], *component["suggestions"]):
            item["path"] = path(item["path"])
    return report


async def _validate(ctx: ServiceContext, own: Own, nodes: list[dict[str, Any]], name: str,
                    index: Callable[[int], int] = int) -> dict[str, Any] | None:
    if not nodes:
        return None  # nothing to validate (POST /validate needs one component)
    try:
        report = await ctx.call(own.validate, {"components": nodes})
    except BemError as exc:  # over the size limit: name the old list
        raise readdress(exc, lambda f: f"data.{name}" if f == "components" else f) from None
    return relabel(report.model_dump(mode="json"), name, index)


async def serve_calculations(old: FunctorCalculations, ctx: ServiceContext, _key: str, *,
                             own: Own) -> dict[str, Any]:
    type_name = OLD_TYPES.get(old.functor_type, old.functor_type)
    both = bool(old.spatial_calculations and old.aggregation_calculations)
    request = {"placements": [{"functor_type": type_name, "phase": p}
                              for p in MODES[old.execution_mode]],
               "links": [{"source": type_name, "target": AGGREGATOR}] if both else []}
    try:
        compatibility = await ctx.call(own.compatibility, request)
    except BemError as exc:  # an unknown type: the one the old payload named
        raise readdress(exc, lambda f: "data.functor_type" if "functor_type" in f or
                        f.startswith("links") else f) from None
    spatial = await _validate(ctx, own, [spatial_node(c, type_name)
                                    for c in old.spatial_calculations], "spatial_calculations")
    aggregation = await _validate(ctx, own, [aggregation_node(c)
                                        for c in old.aggregation_calculations],
                                  "aggregation_calculations")
    return {"functor_type": type_name, "execution_mode": old.execution_mode,
            "compatibility": compatibility.model_dump(mode="json"),
            "validation": {"spatial_calculations": spatial,
                           "aggregation_calculations": aggregation}}


async def serve_components(old: OldComponents, ctx: ServiceContext, _key: str, *,
                           own: Own) -> dict[str, Any]:
    picked = old.selected()
    nodes = [{"id": c.key, "attrs": c.attrs()} for _, c in picked]
    report = await _validate(ctx, own, nodes, "components", lambda k: picked[k][0])
    return {"validation": report}


def payloads(own: Own) -> tuple[OldPayload, ...]:
    return (OldPayload("functor_calculations", FunctorCalculations,
                       partial(serve_calculations, own=own)),
            OldPayload("components", OldComponents, partial(serve_components, own=own)))
