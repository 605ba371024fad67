"""One Prometheus registry per process; every series carries `service` and `cluster` labels.

Series about resources the whole process shares (pool, L1 cache, Redis link) use
`service="cluster"`: they belong to no single member service. Every service port serves the
same registry, so Prometheus scrapes one port per process (see deploy/prometheus).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE  # noqa: F401
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

SHARED = "cluster"  # the `service` label value of process-wide series

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                    5, 10, 30)
_CALL_BUCKETS = (0.000001, 0.00001, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5,
                 1, 5)


LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LOOP_LAG_INTERVAL = 0.05  # seconds between samples: 20 timers a second, ~40 us of CPU


async def sample_loop_lag(metrics: Metrics, interval: float = LOOP_LAG_INTERVAL) -> None:
    """Run until cancelled: each `interval`, record how late the loop woke this task up.

    A timer due at t that runs at t + lag means every callback ready at t waited `lag`
    (a request, a health probe, on any port of the process).
    """
    loop = asyncio.get_running_loop()
    lag = metrics.loop_lag.labels(SHARED, metrics.cluster)
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        lag.observe(max(0.0, loop.time() - due))


class Metrics:
    """The metric families of one process. Build one per runtime (tests run several)."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        sc = ("service", "cluster")
        self.requests = Counter("bem_http_requests_total", "HTTP requests by route and status",
                                (*sc, "method", "route", "status"), registry=r)
        self.latency = Histogram("bem_http_request_duration_seconds", "HTTP request latency",
                                 (*sc, "method", "route"), buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("bem_http_requests_in_flight", "HTTP requests being served", sc,
                               registry=r)
        # Counted in a plain dict and exported at scrape time: an in-process call costs well
        # under a microsecond, and a prometheus Counter.inc (lock + label lookup) would double
        # it. Key: (service, target, operation, transport, outcome).
        self.calls: dict[tuple[str, str, str, str, str], int] = {}
        r.register(_CallCollector(self))
        self.call_latency = Histogram("bem_service_call_duration_seconds",
                                      "latency of calls to peer services",
                                      (*sc, "target", "transport"), buckets=_CALL_BUCKETS,
                                      registry=r)
        self.pool_queue = Gauge("bem_pool_queue_depth", "tasks waiting for a pool worker", sc,
                                registry=r)
        self.pool_workers = Gauge("bem_pool_workers", "live pool worker processes", sc,
                                  registry=r)
        self.pool_tasks = Counter("bem_pool_tasks_total", "pool tasks by outcome",
                                  (*sc, "outcome"), registry=r)
        self.pool_task_time = Histogram("bem_pool_task_duration_seconds",
                                        "time of a task in a pool worker", sc,
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.pool_restarts = Counter("bem_pool_worker_restarts_total",
                                     "pool workers replaced after a crash or time-out",
                                     (*sc, "reason"), registry=r)
        self.inline_tasks = Counter("bem_inline_tasks_total",
                                    "compute jobs small enough to run inline", sc, registry=r)
        self.trace_spans_dropped = Counter(
            "bem_trace_spans_dropped_total",
            "finished spans that never reached the collector, by reason (tracing on)",
            (*sc, "reason"), registry=r)
        self.trace_spans_exported = Counter(
            "bem_trace_spans_exported_total", "finished spans delivered to the collector",
            sc, registry=r)
        self.cache_requests = Counter("bem_cache_requests_total",
                                      "cache lookups by level and result",
                                      (*sc, "level", "result"), registry=r)
        self.cache_bytes = Gauge("bem_cache_l1_bytes", "bytes held by the L1 cache", sc,
                                 registry=r)
        self.cache_entries = Gauge("bem_cache_l1_entries", "entries held by the L1 cache", sc,
                                   registry=r)
        self.redis_up = Gauge("bem_redis_up", "1 when the Redis link is usable", sc, registry=r)
        self.event_lag = Gauge("bem_event_lag", "accepted events not yet processed", sc,
                               registry=r)
        self.events = Counter("bem_events_total", "pulse events by outcome", (*sc, "outcome"),
                              registry=r)
        self.ws_connections = Gauge("bem_ws_connections", "open WebSocket connections", sc,
                                    registry=r)
        self.up = Gauge("bem_service_up", "1 while the service is serving", sc, registry=r)
        # Requests in an old platform's format, so an operator sees when the last old client
        # is gone (docs/migration.md). Every old interface counts here, labelled by the
        # service that answers it and the old operation in that interface's own terms:
        #     metrics.legacy_requests.labels(service, cluster, operation).inc()
        # operation: a /process payload kind (`sfde_requests`, `envelope`: a new body in the
        # old envelope), an old GraphQL field (`executeDataAffinity`), an old ECM message type
        # (`node_select`). Names come from fixed lists, never from the client, so the number
        # of series stays bounded.
        self.legacy_requests = Counter(
            "bem_legacy_requests_total", "requests in an old platform format, by service "
            "and old operation", (*sc, "operation"), registry=r)
        self.loop_lag = Histogram("bem_event_loop_lag_seconds",
                                  "how late a periodic timer fires on the event loop (work "
                                  "that holds the loop delays every port of the process)",
                                  sc, buckets=LOOP_LAG_BUCKETS, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CallCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            "bem_service_calls", "calls to peer services by transport (inprocess | http)",
            labels=("service", "cluster", "target", "operation", "transport", "outcome"))

    def collect(self) -> list[Metric]:
        family = self._family()
        cluster = self.metrics.cluster
        for (service, target, op, transport, outcome), n in list(self.metrics.calls.items()):
            family.add_metric((service, cluster, target, op, transport, outcome), n)
        return [family]


ASGIApp = Callable[[MutableMapping[str, Any], Callable[..., Awaitable[Any]],
                    Callable[..., Awaitable[Any]]], Awaitable[None]]


class MetricsMiddleware:
    """Pure ASGI middleware (BaseHTTPMiddleware costs ~100 us a request) counting requests.

    The route label is the matched route template, never the raw path, so unknown URLs do not
    create new series.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, service: str) -> None:
        self.app = app
        self.metrics = metrics
        self.service = service
        self.in_flight = metrics.in_flight.labels(service, metrics.cluster)
        # (method, route, status) -> the two labelled children: `labels()` takes a lock and
        # builds its key on every call (~6 us a request on this path).
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            key = (scope["method"], template, status)
            series = self._series.get(key) or self._labelled(key)
            series[0].inc()
            series[1].observe(time.perf_counter() - start)

    def _labelled(self, key: tuple[str, str, int]) -> tuple[Any, Any]:
        method, template, status = key
        m = self.metrics
        series = (m.requests.labels(self.service, m.cluster, method, template, str(status)),
                  m.latency.labels(self.service, m.cluster, method, template))
        self._series[key] = series
        return series
