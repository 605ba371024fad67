"""GraphQL types of the functor-type registry (functor_types): types, validation reports,
compatibility and the affinity matrix between design domains."""

from __future__ import annotations

from typing import Any

import strawberry

from bem.services.graphql.convert import jsonable, pick
from bem.services.graphql.types import JSON


@strawberry.type(description="A functor type: the phase it runs in and what it may feed.")
class FunctorType:
    name: str
    phase: str
    callback: str
    description: str
    functors: list[str] = strawberry.field(description="functions a component may name; "
                                                       "the first is the default")
    required_attributes: list[str]
    feeds: list[str] = strawberry.field(description="types this one may feed along an edge")


@strawberry.type(description="A functor type with the JSON Schema its components satisfy.")
class FunctorTypeDetail(FunctorType):
    attributes: JSON = strawberry.field(description="JSON Schema of `attrs`")
    schema: JSON = strawberry.field(description="the full JSON Schema (draft 2020-12)")


@strawberry.type
class FunctorTypeRegistry:
    source: str = strawberry.field(description="where the registry was read from")
    digest: str = strawberry.field(description="content hash of the configuration in use")
    types: list[FunctorType]


def registry_from(answer: Any) -> FunctorTypeRegistry:
    data = jsonable(answer)
    return FunctorTypeRegistry(source=data["source"], digest=data["digest"],
                               types=[pick(FunctorType, t) for t in data["types"]])


def type_detail_from(answer: Any) -> FunctorTypeDetail:
    data = jsonable(answer)
    data["schema"] = data.pop("json_schema", data.get("schema"))
    return pick(FunctorTypeDetail, data)  # type: ignore[no-any-return]


@strawberry.type
class SchemaError:
    path: str = strawberry.field(description="JSON path, e.g. components[2].attrs.x")
    keyword: str = strawberry.field(description="the JSON Schema keyword violated")
    message: str


@strawberry.type(description="A deterministic fix for an invalid component.")
class Suggestion:
    path: str
    action: str = strawberry.field(description="set | replace | clamp | remove")
    value: JSON
    reason: str


@strawberry.type
class ComponentReport:
    index: int
    id: str | None
    functor_type: str | None
    valid: bool
    errors: list[SchemaError]
    suggestions: list[Suggestion]


@strawberry.type
class Validation:
    digest: str
    valid: int = strawberry.field(description="number of valid components")
    invalid: int
    components: list[ComponentReport]


def validation_from(answer: Any) -> Validation:
    data = jsonable(answer)
    reports = [ComponentReport(
        index=c["index"], id=c.get("id"), functor_type=c.get("functor_type"), valid=c["valid"],
        errors=[pick(SchemaError, e) for e in c["errors"]],
        suggestions=[pick(Suggestion, s) for s in c["suggestions"]]) for c in data["components"]]
    return Validation(digest=data["digest"], valid=data["valid"], invalid=data["invalid"],
                      components=reports)


@strawberry.type(description="Affinity between design domains: symmetric, 1 on the diagonal.")
class Affinity:
    domains: list[str]
    matrix: list[list[float]]
    by_domain: JSON
    meaning: str


@strawberry.input
class PlacementInput:
    functor_type: str
    phase: str


@strawberry.input
class LinkInput:
    source: str = strawberry.field(description="functor type of the edge's source")
    target: str


@strawberry.type
class PlacementAnswer:
    functor_type: str
    phase: str
    compatible: bool
    reason: str


@strawberry.type
class LinkAnswer:
    source: str
    target: str
    compatible: bool
    reason: str


@strawberry.type
class Compatibility:
    runs_in: JSON = strawberry.field(description="the phase of each functor type")
    feeds: JSON = strawberry.field(description="types each type may feed")
    placements: list[PlacementAnswer]
    links: list[LinkAnswer]


def compatibility_from(answer: Any) -> Compatibility:
    data = jsonable(answer)
    return Compatibility(runs_in=data["runs_in"], feeds=data["feeds"],
                         placements=[pick(PlacementAnswer, p) for p in data["placements"]],
                         links=[pick(LinkAnswer, link) for link in data["links"]])
