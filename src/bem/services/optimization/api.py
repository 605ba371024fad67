"""optimization: hosted with health, metrics and OpenAPI; operations land with its issue."""

from __future__ import annotations

from bem.runtime.service import ServiceSpec

service = ServiceSpec(
    name="optimization",
    title="BEM optimization",
    description="Placeholder until the service's own issue lands.",
)
