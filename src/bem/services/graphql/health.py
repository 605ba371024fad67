"""The GraphQL view of platform health: the dashboard's report, typed.

The dashboard service owns discovery and aggregation (every cluster and replica, fail > warn
> pass, missing services); the `health` query asks it through the service client, so the
GraphQL answer and `GET :8080/cluster-health` never disagree.
"""

from __future__ import annotations

from typing import Any

import strawberry

from bem.services.graphql.convert import jsonable
from bem.services.graphql.types import JSON


@strawberry.type(description="One service as one replica reports it.")
class ServiceHealth:
    name: str
    status: str = strawberry.field(description="pass | warn | fail")
    url: str | None


@strawberry.type(description="One process serving (some of) a cluster's services.")
class Replica:
    instance: str | None = strawberry.field(description="null when it never answered")
    url: str
    status: str
    error: str | None = strawberry.field(description="why it counts as failed")
    pid: int | None
    ready: bool | None
    uptime_s: float | None
    services: list[ServiceHealth]
    checks: JSON = strawberry.field(description="process-wide checks (redis, cache, pool)")


@strawberry.type
class ClusterHealth:
    name: str
    status: str = strawberry.field(description="worst of its replicas; fail when a service "
                                               "is missing")
    replicas: list[Replica]
    missing: list[str] = strawberry.field(description="services no live replica serves")


@strawberry.type
class ServiceSummary:
    name: str
    status: str = strawberry.field(description="worst over its replicas; fail when none")
    replicas: int
    healthy: int


@strawberry.type(description="Every cluster and replica found, aggregated fail > warn > pass.")
class Health:
    status: str
    source: str = strawberry.field(description="registry (Redis) or static addresses")
    checked_at: float = strawberry.field(description="Unix time of the collection")
    clusters: list[ClusterHealth]
    services: list[ServiceSummary]


def _replica(r: dict[str, Any]) -> Replica:
    services = [ServiceHealth(name=name, status=s.get("status", "fail"), url=s.get("url"))
                for name, s in r.get("services", {}).items()]
    return Replica(instance=r.get("instance"), url=r["url"], status=r["status"],
                   error=r.get("error"), pid=r.get("pid"), ready=r.get("ready"),
                   uptime_s=r.get("uptime_s"), services=services, checks=r.get("checks", {}))


def health_from(answer: Any) -> Health:
    """Health from the dashboard's `cluster_health` answer."""
    report = jsonable(answer)
    clusters = [ClusterHealth(name=name, status=c["status"], missing=c.get("missing", []),
                              replicas=[_replica(r) for r in c["replicas"]])
                for name, c in report["clusters"].items()]
    services = [ServiceSummary(name=name, status=s["status"], replicas=s["replicas"],
                               healthy=s["healthy"]) for name, s in report["services"].items()]
    return Health(status=report["status"], source=report["source"],
                  checked_at=report["checked_at"], clusters=clusters, services=services)
