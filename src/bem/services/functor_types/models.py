"""Request and response models of functor_types."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bem.models.graph import Phase

MAX_PAIRS = 10_000


class TypeSummary(BaseModel):
    name: str
    phase: Phase = Field(description="the phase components of this type run in")
    callback: str
    description: str
    functors: list[str] = Field(description="functions a component may name; the first is "
                                            "the default")
    required_attributes: list[str]
    feeds: list[str] = Field(description="types this one may feed along an edge")


class TypeList(BaseModel):
    source: str = Field(description="where the registry was read from")
    digest: str = Field(description="content hash of the configuration in use")
    types: list[TypeSummary]


class TypeDetail(TypeSummary):
    attributes: dict[str, Any] = Field(description="JSON Schema of `attrs` (with x-unit, "
                                                   "default)")
    json_schema: dict[str, Any] = Field(alias="schema", serialization_alias="schema",
                                        description="the full JSON Schema (draft 2020-12) a "
                                                    "component of this type must satisfy")

    model_config = ConfigDict(populate_by_name=True)


class ValidateRequest(BaseModel):
    """Components in the node shape of the project graph (id, phase, functor, attrs...)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "components": [{"id": "V01", "phase": "alpha", "functor": "evaluate_manufacturing",
                        "attrs": {"component_density": 2400, "material_strength": 32,
                                  "buildability_score": 0.82}}]}]})

    components: list[dict[str, Any]] = Field(
        min_length=1, description="at most MAX_GRAPH_NODES components; each is validated "
                                  "against its functor type's JSON Schema")


class SchemaError(BaseModel):
    path: str = Field(description="JSON path in the request, e.g. "
                                  "components[2].attrs.material_strength")
    keyword: str = Field(description="the JSON Schema keyword violated, or functor_type")
    message: str


class Suggestion(BaseModel):
    path: str
    action: Literal["set", "replace", "clamp", "remove"]
    value: Any = Field(description="the suggested value (null for remove)")
    reason: str


class ComponentReport(BaseModel):
    index: int
    id: str | None
    functor_type: str | None = Field(description="the type validated against; null when it "
                                                  "could not be resolved")
    valid: bool
    errors: list[SchemaError]
    suggestions: list[Suggestion] = Field(description="deterministic: the same component "
                                                      "always gets the same suggestions")


class ValidateResult(BaseModel):
    digest: str = Field(description="content hash of the registry configuration used")
    valid: int = Field(description="number of valid components")
    invalid: int
    components: list[ComponentReport]


class AffinityMatrix(BaseModel):
    domains: list[str]
    matrix: list[list[float]] = Field(description="matrix[i][j] = affinity of domains[i] and "
                                                  "domains[j]: symmetric, 1 on the diagonal, "
                                                  "in [0, 1]")
    by_domain: dict[str, dict[str, float]]
    meaning: str


class Placement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    functor_type: str = Field(min_length=1, max_length=128)
    phase: Phase


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=128, description="functor type of the "
                                                                  "edge's source")
    target: str = Field(min_length=1, max_length=128)


class CompatibilityRequest(BaseModel):
    """Pairs to judge; with none, the answer is just the tables."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "placements": [{"functor_type": "aggregator", "phase": "alpha"}],
        "links": [{"source": "stateless_spatial", "target": "aggregator"}]}]})

    placements: list[Placement] = Field(default_factory=list, max_length=MAX_PAIRS,
                                        description="may this type run in this phase?")
    links: list[Link] = Field(default_factory=list, max_length=MAX_PAIRS,
                              description="may a component of `source` type feed one of "
                                          "`target` type along an edge?")


class PlacementAnswer(Placement):
    compatible: bool
    reason: str


class LinkAnswer(Link):
    compatible: bool
    reason: str


class CompatibilityResult(BaseModel):
    runs_in: dict[str, Phase] = Field(description="the phase of each functor type")
    feeds: dict[str, list[str]] = Field(description="types each type may feed")
    placements: list[PlacementAnswer]
    links: list[LinkAnswer]
