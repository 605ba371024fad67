"""Health reports in the `application/health+json` format (draft-inadarei-api-health-check).

Status order: fail > warn > pass. HTTP 200 for pass and warn, 503 for fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from fastapi.responses import Response

if TYPE_CHECKING:
    from bem.runtime.runtime import Runtime, ServiceContext

HEALTH_CONTENT_TYPE = "application/health+json"
_RANK = {"pass": 0, "warn": 1, "fail": 2}
_COMPONENT_TYPES = {"redis": "datastore", "cache": "component", "pool": "system",
                    "eventlog": "datastore", "uptime": "system"}


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=lambda s: _RANK.get(s, 2), default="pass")


def check(component: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    entry = {"componentType": _COMPONENT_TYPES.get(component.split(":")[0], "component"),
             **result,
             "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return [entry]


def shared_checks(runtime: Runtime) -> dict[str, list[dict[str, Any]]]:
    """Checks of resources every service of the process depends on."""
    checks = {
        "redis:connection": check("redis", runtime.redis.health()),
        "cache:utilization": check("cache", runtime.cache.health()),
        "uptime": check("uptime", {"status": "pass", "observedUnit": "s",
                                   "observedValue": round(runtime.uptime, 1)}),
    }
    if runtime.pool.size:
        checks["pool:workers"] = check("pool", runtime.pool.health())
    return checks


def service_health(ctx: ServiceContext) -> dict[str, Any]:
    checks = shared_checks(ctx.runtime)
    for hook in ctx.spec.health_checks:
        for name, result in hook(ctx).items():
            checks[name] = check(name, result)
    status = worst(entry["status"] for entries in checks.values() for entry in entries)
    return {"status": status, "version": "1", "releaseId": ctx.runtime.version,
            "serviceId": ctx.name, "description": ctx.spec.title,
            "notes": [f"cluster={ctx.runtime.cluster}", f"instance={ctx.runtime.instance_id}"],
            "checks": checks}


def cluster_health(runtime: Runtime) -> dict[str, Any]:
    services = {}
    for name, ctx in runtime.contexts.items():
        report = service_health(ctx)
        services[name] = {"status": report["status"], "url": runtime.addresses.get(name),
                          "checks": {k: v for k, v in report["checks"].items()
                                     if k not in ("redis:connection", "cache:utilization",
                                                  "uptime", "pool:workers")}}
    checks = shared_checks(runtime)
    status = worst([*(s["status"] for s in services.values()),
                    *(e["status"] for entries in checks.values() for e in entries)])
    return {"status": status, "version": "1", "releaseId": runtime.version,
            "serviceId": runtime.cluster, "description": f"cluster {runtime.cluster}",
            "cluster": runtime.cluster, "instance": runtime.instance_id,
            "pid": runtime.pid, "ready": runtime.ready, "services": services,
            "checks": checks}


def health_response(report: Mapping[str, Any]) -> Response:
    code = 503 if report["status"] == "fail" else 200
    return Response(orjson.dumps(report), status_code=code, media_type=HEALTH_CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})
