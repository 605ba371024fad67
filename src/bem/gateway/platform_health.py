"""Find every cluster replica, fetch its health (and metrics), aggregate fail > warn > pass.

Discovery: with Redis up, the replica registry (a sorted set per service) lists every live
replica; one `/cluster-health` is fetched per instance. Without Redis (or while
it is down), every service's static address is asked and the answers are grouped by the
instance and cluster they report. This process itself is read in-process, never over HTTP.

A replica that does not answer within FETCH_TIMEOUT is `fail`. A service that no replica
serves any more (its registry entries expired after a crash) is reported as missing, `fail`,
under the cluster it was last seen in, so a killed cluster stays visible and red instead of
vanishing from the report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from bem.gateway.metrics_summary import RateTracker, parse_totals, registry_totals
from bem.runtime.health import cluster_health, worst
from bem.runtime.placement import Placement
from bem.runtime.registry import static_url

if TYPE_CHECKING:
    from bem.runtime.runtime import Runtime

FETCH_TIMEOUT = 2.0  # seconds per replica; fetches run concurrently
LOCAL_PATH = "/cluster-health/local"  # the dashboard port's per-process report


@dataclass
class Target:
    """One address to ask for a process report, and what we expect to find there."""

    base: str  # scheme://host:port of one of the process's services
    path: str
    cluster: str
    services: tuple[str, ...]
    instance: str | None = None


@dataclass
class Replica:
    instance: str | None
    cluster: str
    url: str
    status: str
    services: dict[str, Any]
    checks: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    pid: int | None = None
    ready: bool | None = None
    uptime_s: float | None = None
    metrics: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def report_path(service: str) -> str:
    # On the dashboard's own port /cluster-health is the aggregate; asking it would recurse.
    return LOCAL_PATH if service == "dashboard" else "/cluster-health"


def best_url(urls: dict[str, str]) -> tuple[str, str]:
    """(service, url) to ask for a process report: any port but the dashboard's if possible."""
    for service, url in sorted(urls.items()):
        if service != "dashboard":
            return service, url
    return "dashboard", urls["dashboard"]


def replica_from_report(report: dict[str, Any], url: str) -> Replica:
    uptime = (report.get("checks", {}).get("uptime") or [{}])[0].get("observedValue")
    return Replica(instance=report.get("instance"), cluster=str(report.get("cluster", "?")),
                   url=url, status=str(report.get("status", "fail")),
                   services=dict(report.get("services") or {}),
                   checks=dict(report.get("checks") or {}), pid=report.get("pid"),
                   ready=report.get("ready"), uptime_s=uptime)


def unreachable(target: Target, error: str) -> Replica:
    services = {s: {"status": "fail", "output": error} for s in target.services}
    return Replica(instance=target.instance, cluster=target.cluster, url=target.base,
                   status="fail", services=services, error=error)


class Collector:
    """The platform report of one process (one per process: `bem.gateway.Gateway`)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.placement = runtime.placement
        self.home: dict[str, str] = {}  # service -> cluster it was last seen in
        self.rates = RateTracker()
        self._inflight: dict[bool, asyncio.Future[dict[str, Any]]] = {}
        keys = sorted(runtime.settings.api_key_set)
        # Other gateway replicas guard /metrics with the API keys; the dashboard is trusted.
        self._headers = {"X-API-Key": keys[0]} if keys else {}

    async def collect(self, *, with_metrics: bool = False) -> dict[str, Any]:
        """The platform report; concurrent callers share one collection (single flight)."""
        task = self._inflight.get(with_metrics)
        if task is None:
            task = asyncio.ensure_future(self._collect(with_metrics))
            self._inflight[with_metrics] = task
            task.add_done_callback(lambda _t: self._inflight.pop(with_metrics, None))
        return await asyncio.shield(task)  # one caller giving up does not cancel the others

    async def _collect(self, with_metrics: bool) -> dict[str, Any]:
        rt = self.runtime
        use_registry = rt.redis.configured and rt.redis.up
        targets = await self._registry_targets() if use_registry else self._static_targets()
        if use_registry and not targets:  # Redis answered but nothing registered yet
            targets, use_registry = self._static_targets(), False
        local = replica_from_report(cluster_health(rt), best_url(rt.addresses)[1]
                                    if rt.addresses else "in-process")
        fetched = await asyncio.gather(*(self._fetch(t) for t in targets))
        replicas = dedupe([local, *fetched])
        if with_metrics:
            await self._add_metrics(replicas)
        for replica in replicas:
            if replica.error is None:
                self.home.update(dict.fromkeys(replica.services, replica.cluster))
        source = "registry" if use_registry else (
            "static (Redis unavailable)" if rt.redis.configured else "static")
        return aggregate(replicas, self.home, source, self.placement)

    async def _registry_targets(self) -> list[Target]:
        by_instance: dict[str, dict[str, Any]] = {}
        for entry in await self.runtime.registry.entries():
            inst = by_instance.setdefault(entry["instance"], {"cluster": entry["cluster"],
                                                              "urls": {}})
            inst["urls"][entry["service"]] = entry["url"]
        targets = []
        for instance, info in by_instance.items():
            if instance == self.runtime.instance_id:
                continue
            service, url = best_url(info["urls"])
            targets.append(Target(base=url, path=report_path(service), cluster=info["cluster"],
                                  services=tuple(sorted(info["urls"])), instance=instance))
        return targets

    def _static_targets(self) -> list[Target]:
        settings = self.runtime.settings
        cluster_of = self.placement.cluster_of
        return [Target(base=static_url(settings, svc, cluster_of[svc]), path=report_path(svc),
                       cluster=self.home.get(svc, cluster_of[svc]), services=(svc,))
                for svc in self.placement.services if svc not in self.runtime.contexts]

    async def _fetch(self, target: Target) -> Replica:
        try:
            status, body = await self._get(target.base + target.path)
            report = orjson.loads(body)
        except TimeoutError:
            return unreachable(target, f"no answer within {FETCH_TIMEOUT:g} s")
        except aiohttp.ClientError as exc:
            detail = f": {exc}" if str(exc) else " (connection lost)"
            return unreachable(target, f"unreachable: {type(exc).__name__}{detail}"[:200])
        except orjson.JSONDecodeError:
            return unreachable(target, f"HTTP {status}: not a health report")
        if not isinstance(report, dict) or "services" not in report:
            return unreachable(target, f"HTTP {status}: not a health report")
        return replica_from_report(report, target.base)

    async def _get(self, url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self.runtime.client.http.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)) as r:
            return r.status, await r.read()

    async def _add_metrics(self, replicas: list[Replica]) -> None:
        async def one(replica: Replica) -> None:
            if replica.error is not None or replica.instance is None:
                return
            if replica.instance == self.runtime.instance_id:
                totals = registry_totals(self.runtime.metrics.registry)
            else:
                try:
                    status, body = await self._get(replica.url + "/metrics", self._headers)
                except (aiohttp.ClientError, TimeoutError):
                    return  # health already says whether the replica answers
                if status != 200:
                    return
                totals = parse_totals(body.decode())
            replica.metrics = self.rates.summarise(replica.instance, totals,
                                                   uptime=replica.uptime_s or 0.0)

        await asyncio.gather(*(one(r) for r in replicas))
        self.rates.forget_except({r.instance for r in replicas if r.instance})


def dedupe(replicas: Iterable[Replica]) -> list[Replica]:
    """One entry per instance (static discovery reaches a process once per port); the
    unreachable static addresses of one cluster merge into one failed entry."""
    seen: dict[str, Replica] = {}
    for replica in replicas:
        key = replica.instance or f"unreachable:{replica.cluster}"
        if key in seen:
            seen[key].services.update({k: v for k, v in replica.services.items()
                                       if k not in seen[key].services})
        else:
            seen[key] = replica
    return list(seen.values())


def aggregate(replicas: list[Replica], home: dict[str, str], source: str,
              placement: Placement) -> dict[str, Any]:
    """The platform report: clusters -> replicas -> services, and services across replicas."""
    clusters: dict[str, dict[str, Any]] = {}
    for replica in sorted(replicas, key=lambda r: (r.cluster, r.instance or "")):
        entry = clusters.setdefault(replica.cluster, {"replicas": [], "missing": []})
        entry["replicas"].append(replica.to_dict())
    services: dict[str, dict[str, Any]] = {}
    for svc in placement.services:
        statuses = [r.services[svc]["status"] for r in replicas if svc in r.services]
        healthy = sum(s != "fail" for s in statuses)
        services[svc] = {"status": worst(statuses) if statuses else "fail",
                         "replicas": len(statuses), "healthy": healthy}
        if not statuses:
            cluster = home.get(svc, placement.cluster_of[svc])
            clusters.setdefault(cluster, {"replicas": [], "missing": []})["missing"].append(svc)
    for entry in clusters.values():
        statuses = [r["status"] for r in entry["replicas"]]
        entry["status"] = "fail" if entry["missing"] else worst(statuses)
    return {"status": worst(c["status"] for c in clusters.values()), "source": source,
            "checked_at": round(time.time(), 3),
            "clusters": dict(sorted(clusters.items())), "services": services}
