"""functor_types (5001): the functor-type registry, component validation, compatibility."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from bem.errors import NotFound, PayloadTooLarge, ValidationFailed
from bem.runtime.runtime import Ctx, ServiceContext
from bem.runtime.service import ServiceSpec
from bem.services.functor_types import legacy
from bem.services.functor_types.models import (
    AffinityMatrix,
    CompatibilityRequest,
    CompatibilityResult,
    ComponentReport,
    LinkAnswer,
    PlacementAnswer,
    TypeDetail,
    TypeList,
    TypeSummary,
    ValidateRequest,
    ValidateResult,
)

if TYPE_CHECKING:  # the module imports YAML and jsonschema: see _lifespan
    from bem.services.functor_types.registry import FunctorType, Registry, RegistrySource

VALIDATION = "bem.services.functor_types.validation"
# jsonschema spends ~0.1-0.3 ms per component: from a few hundred components a batch would
# hold the event loop for tens of milliseconds, far more than a pool round trip (~1 ms).
POOL_FROM_COMPONENTS = 200
AFFINITY_MEANING = (
    "How strongly a decision in one design domain constrains the other: 0 = independent, "
    "1 = the same decision. Symmetric, 1 on the diagonal; configuration values (engineering "
    "judgement), see docs/functor-types.md.")

service = ServiceSpec(
    name="functor_types",
    title="BEM functor types",
    description=(
        "The functor-type registry (stateless_spatial for alpha, local_calcs for beta, "
        "aggregator for gamma), read from a YAML file shipped with the package or named by "
        "FUNCTOR_TYPES_PATH and re-read every CONFIG_CACHE_TTL seconds. Validates components "
        "(project-graph nodes) against their type's JSON Schema, reporting every error with "
        "its JSON path and deterministic repair suggestions; answers phase/type "
        "compatibility; serves the affinity matrix between the design domains (structural, "
        "cost, energy, mep, time, fabrication). See docs/functor-types.md."),
    uses_pool=True,
    compute_modules=(VALIDATION,),
    legacy_operation="validate",
)


@service.lifespan
async def _lifespan(ctx: ServiceContext) -> AsyncIterator[None]:
    # Imported here, not with the spec: a process that only calls functor_types (the
    # gateway's resolvers) would load YAML and jsonschema (~7 MB) for nothing.
    from bem.services.functor_types.registry import RegistrySource

    # A bad override file stops start-up here, with a message naming the file and key.
    ctx.state["registry"] = RegistrySource(ctx.settings.functor_types_path,
                                           ctx.settings.config_cache_ttl)
    yield


def _registry(ctx: ServiceContext) -> Registry:
    source: RegistrySource = ctx.state["registry"]
    return source.get()


@service.health_check
def _health(ctx: ServiceContext) -> dict[str, dict[str, Any]]:
    source = ctx.state.get("registry")
    return {} if source is None else {"config:registry": source.health()}


def _summary(registry: Registry, t: FunctorType) -> dict[str, Any]:
    return {"name": t.name, "phase": t.phase, "callback": t.callback,
            "description": t.description, "functors": list(t.functors),
            "required_attributes": list(t.attributes.get("required", [])),
            "feeds": list(registry.feeds[t.name])}


@service.operation("GET", "/types")
async def list_types(ctx: Ctx) -> TypeList:
    """Every functor type: phase, callback, functors, required attributes, feeds."""
    registry = _registry(ctx)
    source: RegistrySource = ctx.state["registry"]
    return TypeList(source=source.source, digest=registry.digest,
                    types=[TypeSummary(**_summary(registry, t))
                           for t in registry.types.values()])


@service.operation("GET", "/types/{name}")
async def get_type(name: str, ctx: Ctx) -> TypeDetail:
    """One functor type with its attribute schema and full component JSON Schema."""
    registry = _registry(ctx)
    t = registry.types.get(name)
    if t is None:
        raise NotFound(f"name: no functor type {name!r}; known types: "
                       f"{', '.join(registry.types)}", field="name")
    return TypeDetail(**_summary(registry, t), attributes=t.attributes, schema=t.schema)


@service.operation("POST", "/validate", idempotent=True)
async def validate(body: ValidateRequest, ctx: Ctx) -> ValidateResult:
    """Validate components against their functor types: errors with paths, suggestions."""
    from bem.services.functor_types.validation import validate_components

    limit = ctx.settings.max_graph_nodes
    if len(body.components) > limit:
        raise PayloadTooLarge(f"components: {len(body.components)} components exceed the "
                              f"limit of {limit} (MAX_GRAPH_NODES)", field="components")
    registry = _registry(ctx)
    reports = await ctx.runtime.pool.submit(
        validate_components, registry.data, body.components,
        size=len(body.components), threshold=POOL_FROM_COMPONENTS)
    valid = sum(r["valid"] for r in reports)
    return ValidateResult(digest=registry.digest, valid=valid, invalid=len(reports) - valid,
                          components=[ComponentReport.model_validate(r) for r in reports])


@service.operation("GET", "/affinity")
async def affinity(ctx: Ctx) -> AffinityMatrix:
    """The affinity matrix between design domains (symmetric, unit diagonal, in [0, 1])."""
    registry = _registry(ctx)
    rows = [list(row) for row in registry.matrix]
    return AffinityMatrix(
        domains=list(registry.domains), matrix=rows,
        by_domain={a: dict(zip(registry.domains, row, strict=True))
                   for a, row in zip(registry.domains, rows, strict=True)},
        meaning=AFFINITY_MEANING)


@service.operation("POST", "/compatibility", idempotent=True)
async def compatibility(body: CompatibilityRequest, ctx: Ctx) -> CompatibilityResult:
    """Which types run in which phase and which may feed which; judges the given pairs."""
    from bem.services.functor_types.compatibility import link, placement

    registry = _registry(ctx)
    _known(registry, [(f"placements[{i}].functor_type", p.functor_type)
                      for i, p in enumerate(body.placements)]
           + [(f"links[{i}].{end}", getattr(lk, end))
              for i, lk in enumerate(body.links) for end in ("source", "target")])
    placements = [PlacementAnswer(**p.model_dump(), **_answer(placement(registry, p.functor_type,
                                                                        p.phase)))
                  for p in body.placements]
    links = [LinkAnswer(**lk.model_dump(), **_answer(link(registry, lk.source, lk.target)))
             for lk in body.links]
    return CompatibilityResult(
        runs_in={t.name: t.phase for t in registry.types.values()},
        feeds={name: list(targets) for name, targets in registry.feeds.items()},
        placements=placements, links=links)


def _answer(result: tuple[bool, str]) -> dict[str, Any]:
    return {"compatible": result[0], "reason": result[1]}


def _known(registry: Registry, names: list[tuple[str, str]]) -> None:
    details = [{"field": where, "message": f"unknown functor type {name!r} (known: "
                                           f"{', '.join(registry.types)})",
                "type": "unknown"} for where, name in names if name not in registry.types]
    if details:
        raise ValidationFailed.naming(details)


service.legacy_payloads = legacy.payloads(legacy.Own(validate=validate,
                                                       compatibility=compatibility))
