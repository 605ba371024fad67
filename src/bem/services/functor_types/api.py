"""functor_types: hosted with health, metrics and OpenAPI; operations land with its issue."""

from __future__ import annotations

from bem.runtime.service import ServiceSpec

service = ServiceSpec(
    name="functor_types",
    title="BEM functor types",
    description="Placeholder until the service's own issue lands.",
)
