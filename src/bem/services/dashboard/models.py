"""Response models of the dashboard (the platform-wide health report)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["pass", "warn", "fail"]


class ReplicaHealth(BaseModel):
    """One process serving (some of) a cluster's services."""

    instance: str | None = Field(None, description="registry instance id; absent when the "
                                                    "replica never answered")
    cluster: str
    url: str = Field(description="address the report was fetched from")
    status: Status
    error: str | None = Field(None, description="why the replica counts as failed "
                                                "(unreachable, time-out, bad answer)")
    pid: int | None = None
    ready: bool | None = None
    uptime_s: float | None = None
    services: dict[str, dict[str, Any]] = Field(
        description="service -> {status, url, checks} as the replica reports it")
    checks: dict[str, list[dict[str, Any]]] = Field(
        {}, description="process-wide checks (redis, cache, pool, uptime), health+json style")
    metrics: dict[str, Any] | None = Field(
        None, description="key figures from the replica's /metrics (GET /overview only)")


class ClusterHealth(BaseModel):
    status: Status = Field(description="worst of its replicas; fail when a service is missing")
    replicas: list[ReplicaHealth]
    missing: list[str] = Field(description="services of this cluster no live replica serves")


class ServiceSummary(BaseModel):
    status: Status = Field(description="worst over the replicas serving it; fail when none")
    replicas: int
    healthy: int = Field(description="replicas whose status is pass or warn")


class PlatformHealth(BaseModel):
    status: Status = Field(description="fail > warn > pass over every cluster")
    source: str = Field(description="'registry' (Redis) or 'static' (BACKEND_* addresses)")
    checked_at: float = Field(description="Unix time of the collection")
    clusters: dict[str, ClusterHealth]
    services: dict[str, ServiceSummary]


class ClusterReport(ClusterHealth):
    name: str
    checked_at: float
