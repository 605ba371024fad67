"""One Prometheus registry per process; every series carries `service` and `cluster` labels.

Series about resources the whole process shares (pool, L1 cache, Redis link) use
`service="cluster"`: they belong to no single member service. Every service port serves the
same registry, so Prometheus scrapes one port per process (see deploy/prometheus).
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
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
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
        self.http = HttpStats(cluster)
        r.register(self.http)
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


class Latency:
    """One latency histogram, as plain numbers: `counts[i]` requests took at most
    `_LATENCY_BUCKETS[i]` seconds and more than the bound before it (the last: more than
    every bound)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


class HttpStats(Collector):
    """The request series of every port of the process, counted in plain numbers and exported
    at scrape time as `bem_http_requests_total`, `bem_http_request_duration_seconds` and
    `bem_http_requests_in_flight`. A prometheus_client child takes a lock per update, and a
    request made five (~3 us on each port it crosses); the event loop is the only writer."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.requests: dict[tuple[str, str, str, int], list[int]] = {}
        self.latency: dict[tuple[str, str, str], Latency] = {}
        self.in_flight: dict[str, list[int]] = {}

    def gauge(self, service: str) -> list[int]:
        """The in-flight count of `service`, a one-element list to add to."""
        return self.in_flight.setdefault(service, [0])

    def series(self, service: str, method: str, route: str, status: int
               ) -> tuple[list[int], Latency]:
        """The count (a one-element list) and the latency histogram of one kind of request."""
        count = self.requests.setdefault((service, method, route, status), [0])
        return count, self.latency.setdefault((service, method, route), Latency())

    def describe(self) -> list[Metric]:
        return self._families()

    def _families(self) -> list[Any]:
        c = ("service", "cluster")
        return [CounterMetricFamily("bem_http_requests", "HTTP requests by route and status",
                                    labels=(*c, "method", "route", "status")),
                HistogramMetricFamily("bem_http_request_duration_seconds",
                                      "HTTP request latency", labels=(*c, "method", "route")),
                GaugeMetricFamily("bem_http_requests_in_flight", "HTTP requests being served",
                                  labels=c)]

    def collect(self) -> list[Metric]:
        requests, latency, in_flight = self._families()
        cluster = self.cluster
        for (service, method, route, status), count in list(self.requests.items()):
            requests.add_metric((service, cluster, method, route, str(status)), count[0])
        for (service, method, route), hist in list(self.latency.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*_LATENCY_BUCKETS, float("inf")), hist.counts, strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))
            latency.add_metric((service, cluster, method, route), buckets, hist.sum)
        for service, gauge in list(self.in_flight.items()):
            in_flight.add_metric((service, cluster), gauge[0])
        return [requests, latency, in_flight]


ASGIApp = Callable[[MutableMapping[str, Any], Callable[..., Awaitable[Any]],
                    Callable[..., Awaitable[Any]]], Awaitable[None]]


class MetricsMiddleware:
    """Pure ASGI middleware (BaseHTTPMiddleware costs ~100 us a request) counting requests.

    The route label is the matched route template, never the raw path, so unknown URLs do not
    create new series.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, service: str) -> None:
        self.app = app
        self.http = metrics.http
        self.service = service
        self.in_flight = metrics.http.gauge(service)
        # (method, route, status) -> its count and histogram, looked up once.
        self._series: dict[tuple[str, str, int], tuple[list[int], Latency]] = {}

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

        self.in_flight[0] += 1
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.in_flight[0] -= 1
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            key = (scope["method"], template, status)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = self.http.series(self.service, *key)
            series[0][0] += 1
            series[1].observe(time.perf_counter() - start)
