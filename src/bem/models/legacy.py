"""The old platform's components, as its `/process` payloads carry them (docs/migration.md).

An old component is a loose record: a database row (`component_id, component_type,
dimensions{length_mm..}, spatial_data{centroid_x..}, materials[..]`), a test's
`{id, type, primary_functor, material, length}`, or the old GraphQL server's
`{id, type, primary_functor, properties{material, dimensions, specifications}}`. As a node of
the project graph it keeps its id and, as `attrs`, every scalar it carries at any depth,
named by its own key (`dimensions.length_mm` -> `attrs.length_mm`; the first of two equal
names wins); lists and nulls are no attributes.

`OldComponents` is the payload `tests/test_phase2_container_orchestration.py` sends to every
service: `{components, node_sequence, phase, affinity_types}`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from bem.errors import ValidationFailed

ID_KEYS = ("id", "component_id")
MAX_DEPTH = 4  # properties.dimensions.length_mm is 3 deep; nothing old nests further
INT64 = 2**63


def invalid(why: str) -> PydanticCustomError:
    """A validator's error whose message is `why` alone (a ValueError gets "Value error, ")."""
    return PydanticCustomError("value_error", "{why}", {"why": why})


class OldComponent(BaseModel):
    """A component of the old platform: `id` or `component_id`, and any other fields."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(None, min_length=1, max_length=128)
    component_id: str | None = Field(None, min_length=1, max_length=128,
                                     description="the database rows' name for id")

    @model_validator(mode="after")
    def _identified(self) -> OldComponent:
        if self.id is None and self.component_id is None:
            raise invalid("give id (or component_id): the node id it becomes")
        return self

    @property
    def key(self) -> str:
        return str(self.id or self.component_id)

    def attrs(self) -> dict[str, float | int | bool | str]:
        return scalars(self.model_extra or {}, skip=ID_KEYS)  # the ids are the node's id


class OldComponents(BaseModel):
    """Old components (`tests/test_phase2_container_orchestration.py`, the old GraphQL
    server's analyzeComponent); `node_sequence` selects and orders them."""

    model_config = ConfigDict(extra="forbid")

    components: list[OldComponent] = Field(min_length=1)
    node_sequence: list[str] | None = Field(
        None, min_length=1,  # selecting none would leave every service an empty graph
        description="ids of components to process, in order (default: all)")
    phase: str | None = Field(None, max_length=64,
                              description="the old platform's phase (phase_1..3, "
                                          "cross_phase, alpha, beta, gamma)")
    affinity_types: list[str] | None = Field(None, description="sfde: the design domains")

    def selected(self) -> list[tuple[int, OldComponent]]:
        """(index in components, component) in node_sequence order, or all of them; a
        duplicate id or a sequence naming no component is a 422."""
        by_id: dict[str, int] = {}
        for i, c in enumerate(self.components):
            if c.key in by_id:
                raise ValidationFailed(f"data.components[{i}]: duplicate id {c.key!r} "
                                       f"(components[{by_id[c.key]}])",
                                       field=f"data.components[{i}]")
            by_id[c.key] = i
        if self.node_sequence is None:
            return list(enumerate(self.components))
        picked = []
        for j, node in enumerate(self.node_sequence):
            if node not in by_id:
                known = ", ".join(list(by_id)[:10])
                raise ValidationFailed(f"data.node_sequence[{j}]: {node!r} is none of the "
                                       f"components (ids: {known})",
                                       field=f"data.node_sequence[{j}]")
            picked.append((by_id[node], self.components[by_id[node]]))
        return picked


def _scalar(value: Any) -> bool:
    if isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -INT64 <= value < INT64  # what the graph model (and its hash) carries
    return isinstance(value, float) and math.isfinite(value)


def _walk(record: Mapping[str, Any], depth: int, skip: tuple[str, ...]
          ) -> Iterator[tuple[str, Any]]:
    for key, value in record.items():
        if key in skip:
            continue
        if isinstance(value, Mapping):
            if depth < MAX_DEPTH:
                yield from _walk(value, depth + 1, skip)
        elif _scalar(value):
            yield key, value


def scalars(record: Mapping[str, Any], skip: tuple[str, ...] = ()
            ) -> dict[str, float | int | bool | str]:
    """Every scalar of a nested record by its own key (the first of equal keys wins), but
    those named in `skip`."""
    out: dict[str, Any] = {}
    for key, value in _walk(record, 1, skip):
        out.setdefault(key, value)
    return out
