"""callback_engine: hosted with health, metrics and OpenAPI; operations land with its issue."""

from __future__ import annotations

from bem.runtime.service import ServiceSpec

service = ServiceSpec(
    name="callback_engine",
    title="BEM callback engine",
    description="Placeholder until the service's own issue lands.",
)
