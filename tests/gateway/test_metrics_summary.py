"""Key figures from real Prometheus text produced by the runtime's own Metrics registry."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bem.gateway.metrics_summary import (
    RateTracker,
    parse_totals,
    quantile,
    registry_totals,
    samples,
)
from bem.runtime.metrics import SHARED, Metrics


def count(m: Metrics, service: str, method: str, route: str, status: int, n: int = 1,
          latency: float | None = None) -> None:
    total, histogram = m.http.series(service, method, route, status)
    total[0] += n
    if latency is not None:
        histogram.observe(latency)


def traffic(m: Metrics, requests: int, latency: float) -> None:
    for _ in range(requests):
        count(m, "sfde", "POST", "/evaluate", 200, latency=latency)
    # probes: never counted as traffic
    count(m, "sfde", "GET", "/metrics", 200, 1000, latency=9.0)


def test_fast_parser_agrees_with_prometheus_client() -> None:
    m = Metrics("compute")
    traffic(m, 3, 0.02)
    count(m, 'odd "route" \\ with\nnewline', "GET", "/x{y}", 404)
    m.calls["dag_alpha", "sfde", "evaluate", "http", "ok"] = 2
    m.pool_workers.labels(SHARED, "compute").set(3)
    text = m.render().decode()
    reference = [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
                 for s in family.samples]
    assert len(reference) > 40 and list(samples(text)) == reference
    assert registry_totals(m.registry) == parse_totals(text)  # local process: no text at all


def test_quantile_interpolates_inside_the_bucket() -> None:
    # 100 observations: 50 in (0, 0.1], 50 in (0.1, 0.2]. p95 is rank 95: 45/50 of the way
    # through the second bucket -> 0.1 + 0.1 * 0.9 = 0.19.
    assert quantile(0.95, [(0.1, 50), (0.2, 100), (float("inf"), 100)]) == pytest.approx(0.19)
    assert quantile(0.5, [(0.1, 50), (0.2, 100), (float("inf"), 100)]) == pytest.approx(0.1)
    # everything above the last finite bound: that bound is the answer (as Prometheus does)
    assert quantile(0.95, [(0.1, 0), (float("inf"), 10)]) == 0.1
    assert quantile(0.95, [(0.1, 0), (float("inf"), 0)]) is None


def test_rates_over_the_window_exclude_probes() -> None:
    m = Metrics("compute")
    traffic(m, 10, 0.004)
    count(m, "sfde", "POST", "/evaluate", 500, 2)
    m.cache_requests.labels(SHARED, "compute", "l1", "hit").inc(3)
    m.cache_requests.labels(SHARED, "compute", "l1", "miss").inc(1)
    m.pool_workers.labels(SHARED, "compute").set(2)
    m.calls["dag_alpha", "sfde", "evaluate", "inprocess", "ok"] = 8
    tracker = RateTracker(window=10.0)

    # First scrape: everything since the process started (uptime 4 s ago).
    first = tracker.summarise("i1", parse_totals(m.render().decode()), uptime=4.0, now=100.0)
    assert first["window_s"] == 4.0
    sfde = first["services"]["sfde"]
    assert sfde["requests_per_s"] == pytest.approx(12 / 4)  # 10 ok + 2 errors, probes out
    assert sfde["errors_per_s"] == pytest.approx(2 / 4)
    assert sfde["latency_mean_ms"] == pytest.approx(4.0)
    assert 2.5 < sfde["latency_p95_ms"] <= 5.0  # inside the (2.5 ms, 5 ms] bucket
    assert first["cache"]["l1_hit_ratio"] == 0.75 and first["pool"]["workers"] == 2
    assert first["calls_per_s"] == {"inprocess": 2.0, "http": 0.0}

    # Two seconds later, 20 slower requests: the window starts at the first scrape.
    traffic(m, 20, 0.04)
    second = tracker.summarise("i1", parse_totals(m.render().decode()), uptime=6.0, now=102.0)
    assert second["window_s"] == 2.0
    assert second["total"]["requests_per_s"] == pytest.approx(20 / 2)
    assert second["total"]["latency_mean_ms"] == pytest.approx(40.0)
    assert second["cache"]["l1_hit_ratio"] is None  # no lookups in this window

    # Once a scrape is WINDOW old it becomes the baseline; older ones are forgotten.
    third = tracker.summarise("i1", parse_totals(m.render().decode()), uptime=18.0, now=114.0)
    assert third["window_s"] == 12.0 and third["total"]["requests_per_s"] == 0.0
    assert third["total"]["latency_p95_ms"] is None
    tracker.forget_except(set())
    assert tracker.summarise("i1", parse_totals(m.render().decode()), uptime=20.0,
                             now=116.0)["window_s"] == 20.0


def test_legacy_requests_total_and_per_minute() -> None:
    m = Metrics("compute")
    m.legacy_requests.labels("dag_alpha", "compute", "dag_request").inc(3)
    m.legacy_requests.labels("sfde", "compute", "sfde_requests").inc()
    tracker = RateTracker(window=10.0)
    first = tracker.summarise("i1", parse_totals(m.render().decode()), uptime=60.0, now=100.0)
    assert first["legacy"] == [
        {"service": "dag_alpha", "operation": "dag_request", "total": 3.0, "per_min": 3.0},
        {"service": "sfde", "operation": "sfde_requests", "total": 1.0, "per_min": 1.0}]
    m.legacy_requests.labels("dag_alpha", "compute", "dag_request").inc(2)
    second = tracker.summarise("i1", registry_totals(m.registry), uptime=90.0, now=130.0)
    assert second["legacy"][0] == {"service": "dag_alpha", "operation": "dag_request",
                                   "total": 5.0, "per_min": 4.0}  # 2 in the last 30 s
    assert second["legacy"][1]["per_min"] == 0.0  # sfde's old client has gone quiet
    assert Metrics("logic").render().count(b"bem_legacy_requests_total{") == 0


def test_loop_lag_p95_and_worst_over_the_window() -> None:
    m = Metrics("single")
    lag = m.loop_lag.labels(SHARED, "single")
    for _ in range(99):
        lag.observe(0.0004)
    lag.observe(0.2)  # one stall: invisible in the p95, shown as the worst
    figures = RateTracker().summarise("i", parse_totals(m.render().decode()), uptime=10.0)
    assert figures["loop_lag"]["p95_ms"] <= 1.0
    assert figures["loop_lag"]["max_ms"] == 250.0  # the bucket (0.1, 0.25] holds it
    lag.observe(60.0)  # beyond the last bucket: its finite bound, never infinity
    figures = RateTracker().summarise("i", parse_totals(m.render().decode()), uptime=10.0)
    assert figures["loop_lag"]["max_ms"] == 10_000.0
    empty = RateTracker().summarise("j", parse_totals(Metrics("x").render().decode()),
                                    uptime=1.0)
    assert empty["loop_lag"] == {"p95_ms": None, "max_ms": None}
