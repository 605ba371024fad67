"""Prometheus scrape config, alert rules, Grafana provisioning and dashboard.

Every PromQL expression (alerts and panels) is parsed with a real PromQL parser, and every
metric it selects is looked up in the /metrics of a real compute cluster that has served a
little traffic (with Redis, so the Redis gauge exists): the name must be a family the
cluster exposes, and labels it filters or groups by must exist on the series.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import math
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser as promql
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bem.clusters import CLUSTERS
from bem.services.graph_runtime import api as graph_runtime
from bem.settings import load_settings
from tests.deploy.files import CLUSTER_SERVICE, DEPLOY, load_yaml, ports_of
from tests.support import RedisServer, make_settings, redis_server, run_cluster, url_of

PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
COMPOSE = DEPLOY / "docker-compose.optimized.yml"
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
# Grafana's variables, replaced by a value of the same kind before parsing
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$cluster": ".*", "$service": ".*"}


# --- the queries ---------------------------------------------------------------------------
def alert_rules() -> list[dict[str, Any]]:
    return [rule for path in RULES for group in load_yaml(path)["groups"]
            for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    queries = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        queries += [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        for variable in board["templating"]["list"]:  # label_values(<selector>, <label>)
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
            assert match, variable["query"]
            queries.append(f"group by ({match.group(2)}) ({match.group(1)})")
    return queries


def parse(expr: str) -> promql.Expr:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return promql.parse(expr)


def all_queries() -> list[str]:
    return [r["expr"] for r in alert_rules()] + dashboard_queries()


def selectors(expr: promql.Expr) -> list[promql.VectorSelector]:
    found: list[promql.VectorSelector] = []
    promql.walk(expr, lambda node: found.append(node)
                if isinstance(node, promql.VectorSelector) else None)
    return found


def grouping(expr: promql.Expr) -> list[tuple[list[str], list[promql.VectorSelector]]]:
    """(labels of a `by (...)`, the selectors it aggregates) for every aggregation."""
    found = []

    def visit(node: promql.Expr) -> None:
        modifier = getattr(node, "modifier", None)
        if isinstance(node, promql.AggregateExpr) and modifier is not None \
                and modifier.type == promql.AggModifierType.By:
            found.append((list(modifier.labels), selectors(node)))

    promql.walk(expr, visit)
    return found


# --- a real cluster's metrics --------------------------------------------------------------
@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def render_metrics(redis_url: str) -> str:
    async with run_cluster("compute", make_settings(redis_url=redis_url)) as sup:
        await drive_traffic(sup)
        async with httpx.AsyncClient(base_url=url_of(sup, "sfde")) as http:
            return (await http.get("/metrics")).text


@pytest.fixture(scope="module")
def exposition(redis: RedisServer) -> dict[str, dict[str, Any]]:
    """family -> {type, samples: name -> label sets}, after requests of every kind."""
    text = asyncio.run(render_metrics(redis.url))  # one cluster for the whole module
    families: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        samples: dict[str, list[dict[str, str]]] = {}
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.labels)
        families[family.name] = {"type": family.type, "samples": samples}
    return families


async def drive_traffic(sup: Any) -> None:
    """Requests (ok, 4xx), a stored graph, an analysis twice (cache miss then hit), a call
    through the service client and a task in the pool."""
    graph_url = url_of(sup, "graph_runtime")
    async with httpx.AsyncClient(base_url=graph_url) as http:
        sample = (await http.get("/sample")).json()
        stored = await http.post("/graphs", json=sample)
        assert stored.status_code == 201, stored.text
        body = {"graph_id": stored.json()["graph_id"], "metrics": ["summary"]}
        for _ in range(2):
            assert (await http.post("/analyze", json=body)).status_code == 200
        assert (await http.get("/graphs/0000")).status_code == 404
        for service in sup.ports:
            assert (await http.get(f"{url_of(sup, service)}/health")).status_code == 200
    await sup.runtime.client.call(graph_runtime.analyze, body, caller="dag_alpha")
    assert await sup.runtime.pool.run(math.factorial, 20) == math.factorial(20)


def sample_names(family: str, info: dict[str, Any]) -> set[str]:
    """The names a query can select from a family (its declared series, even if empty)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",), "summary": ("_sum", "_count", "")}[info["type"]]
    return {family + s for s in suffixes} | set(info["samples"])


def series_of(exposition: dict[str, dict[str, Any]], name: str) -> list[dict[str, str]]:
    return [labels for info in exposition.values() for labels in info["samples"].get(name, [])]


def test_every_metric_a_query_uses_exists(exposition: dict[str, dict[str, Any]]) -> None:
    known = {n for family, info in exposition.items() for n in sample_names(family, info)}
    used = {s.name for q in all_queries() for s in selectors(parse(q)) if s.name != "up"}
    assert used, "no metric found in the queries"
    assert used - known == set(), "queries use metrics no cluster exposes"


def test_labels_a_query_filters_on_exist(exposition: dict[str, dict[str, Any]]) -> None:
    for query in all_queries():
        for selector in selectors(parse(query)):
            series = series_of(exposition, selector.name)
            if not series:  # a family with no series yet: its labels are not visible
                continue
            labels = set().union(*series) | TARGET_LABELS
            for matcher in selector.matchers.matchers:
                assert matcher.name in labels, (query, matcher.name)
                if matcher.op == promql.MatchOp.Equal:
                    values = {s.get(matcher.name) for s in series}
                    assert matcher.value in values, (query, matcher.name, matcher.value)


def test_labels_a_query_groups_by_exist(exposition: dict[str, dict[str, Any]]) -> None:
    for query in all_queries():
        for labels, under in grouping(parse(query)):
            for selector in under:
                series = series_of(exposition, selector.name)
                if series:
                    known = set().union(*series) | TARGET_LABELS
                    assert set(labels) <= known, (query, selector.name, labels)


def test_traffic_produced_the_series_the_dashboard_plots(
        exposition: dict[str, dict[str, Any]]) -> None:
    for name in ("bem_http_requests_total", "bem_http_request_duration_seconds_bucket",
                 "bem_service_calls_total", "bem_cache_requests_total", "bem_redis_up",
                 "bem_pool_tasks_total", "bem_pool_task_duration_seconds_bucket",
                 "bem_pool_workers"):
        assert series_of(exposition, name), name
    statuses = {s["status"] for s in series_of(exposition, "bem_http_requests_total")}
    assert {"200", "201", "404"} <= statuses


# --- Prometheus ----------------------------------------------------------------------------
def test_every_cluster_is_scraped_on_one_port() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS)["scrape_configs"]}
    compose = load_yaml(COMPOSE)["services"]
    for cluster in CLUSTERS:
        [sd] = jobs[f"bem-{cluster}"]["dns_sd_configs"]  # every replica of the service
        assert sd["names"] == [CLUSTER_SERVICE[cluster]] and sd["type"] == "A"
        assert sd["port"] == ports_of(cluster)[0]  # one port: all serve the same registry
        assert CLUSTER_SERVICE[cluster] in compose
    assert jobs["node"]["dns_sd_configs"][0]["names"] == ["node-exporter"]


def test_rule_files_are_mounted_where_prometheus_reads_them() -> None:
    config = load_yaml(PROMETHEUS)
    mounts = dict(v.split(":")[:2] for v in load_yaml(COMPOSE)["services"]["prometheus"]
                  ["volumes"] if v.startswith("./"))
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    in_container = [f"{mounts['./prometheus/rules']}/{p.name}" for p in RULES]
    for pattern in config["rule_files"]:
        assert [p for p in in_container if fnmatch.fnmatch(p, pattern)], pattern
    assert RULES


def test_alerts_cover_the_guides_failures() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    used = {r["alert"]: {s.name for s in selectors(parse(r["expr"]))} for r in rules}
    for metric in ("up", "bem_http_requests_total", "bem_event_lag",
                   "bem_pool_worker_restarts_total", "bem_redis_up"):
        assert any(metric in m for m in used.values()), f"no alert on {metric}"
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"]
        if "for" in rule:
            promql.parse_duration(rule["for"])


# --- Grafana -------------------------------------------------------------------------------
def test_grafana_provisioning_matches_the_stack() -> None:
    [datasource] = load_yaml(GRAFANA / "provisioning/datasources/prometheus.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    compose = load_yaml(COMPOSE)["services"]
    mounts = dict(v.split(":")[:2] for v in compose["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    [provider] = load_yaml(GRAFANA / "provisioning/dashboards/bem.yml")["providers"]
    assert provider["options"]["path"] == mounts["./grafana/dashboards"]
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_dashboard_panels_are_laid_out_and_cover_the_guide() -> None:
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        panels = board["panels"]
        assert len({p["id"] for p in panels}) == len(panels)
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                    for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not area & cells, f"{panel['title']} overlaps another panel"
            cells |= area
    used = {s.name for q in dashboard_queries() for s in selectors(parse(q))}
    for metric in ("bem_http_requests_total", "bem_http_request_duration_seconds_bucket",
                   "bem_pool_queue_depth", "bem_pool_worker_restarts_total",
                   "bem_cache_requests_total", "bem_event_lag"):
        assert metric in used, f"the dashboard does not show {metric}"


def test_promtool_accepts_the_config_and_rules(tmp_path: Path) -> None:
    """Prometheus's own checker, where installed (Debian's `prometheus` package has it)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    rules = tmp_path / "rules"  # the config names the rules' path inside the container
    rules.mkdir()
    for path in RULES:
        shutil.copy(path, rules / path.name)
    config = PROMETHEUS.read_text().replace("/etc/prometheus/rules", str(rules))
    (tmp_path / "prometheus.yml").write_text(config)
    done = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_grafana_reads_traces_from_the_stacks_jaeger() -> None:
    [datasource] = load_yaml(GRAFANA / "provisioning/datasources/jaeger.yml")["datasources"]
    assert datasource["type"] == "jaeger" and datasource["url"] == "http://jaeger:16686"
    compose = load_yaml(COMPOSE)["services"]
    jaeger = compose["jaeger"]
    assert {"4318", "16686"} <= set(jaeger["expose"])  # OTLP/HTTP in, the UI Grafana reads
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert "jaeger" in compose["grafana"]["depends_on"]
    assert set(jaeger["profiles"]) == {"monitoring", "full"}
    # The clusters export there once the endpoint is set; empty (the default) is off.
    env = compose["compute-cluster"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    assert not load_settings(otel_exporter_otlp_endpoint="").tracing
    assert load_settings(otel_exporter_otlp_endpoint="http://jaeger:4318").tracing
