"""ecm_ws: hosted with health, metrics and OpenAPI; operations land with its issue."""

from __future__ import annotations

from bem.runtime.service import ServiceSpec

service = ServiceSpec(
    name="ecm_ws",
    title="BEM ECM WebSocket",
    description="Placeholder until the service's own issue lands.",
)
