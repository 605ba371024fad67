"""dag_alpha: hosted with health, metrics and OpenAPI; operations land with its issue."""

from __future__ import annotations

from bem.runtime.service import ServiceSpec

service = ServiceSpec(
    name="dag_alpha",
    title="BEM DAG alpha",
    description="Placeholder until the service's own issue lands.",
)
