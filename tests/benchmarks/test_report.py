"""Ratios, claims, tables and chart of a benchmark result; `bem bench` wiring; import probe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks.load import Samples

import bem
from bem.cli import EXIT_USAGE, main
from benchmarks import imports, report, topology

REPO = Path(__file__).resolve().parents[2]


def _topology(pss: float, startup: float, rps: float, dag_p50: float | None) -> dict[str, Any]:
    lat: dict[str, Any] = {"graphql": {"skipped": "no field answers yet"}}
    if dag_p50 is not None:
        samples = Samples(latencies_ms=[dag_p50] * 9 + [10 * dag_p50], errors=1,
                          examples=["503 busy"])
        lat["dag_run"] = samples.summary(concurrency=4)
    return {"processes": 3, "startup_s": {"median": startup, "samples": [startup]},
            "memory": {"warm": {"processes": 9, "pss_mb": pss, "rss_mb": 2 * pss},
                       "loaded": {"processes": 9, "pss_mb": pss, "rss_mb": 2 * pss}},
            "latency": lat,
            "throughput": topology.combine_throughput([
                {"rps": 0, "requests": 300, "seconds": 2.0, "errors": 0, "statuses": {"200": 300},
                 "p50_ms": 1.0, "p99_ms": 3.0},
                {"rps": 0, "requests": int(rps * 4) - 300, "seconds": 2.0, "errors": 2,
                 "statuses": {"200": int(rps * 4) - 302, "503": 2}, "p50_ms": 2.0, "p99_ms": 5.0}])}


@pytest.fixture
def result() -> dict[str, Any]:
    out: dict[str, Any] = {
        "mode": "quick", "command": "bem bench --quick", "date": "2026-01-02T03:04:05+00:00",
        "duration_s": 99.0, "settings": {"workers": 2},
        "machine": {"host": "h", "cpus": 2, "cpu_model": "cpu", "ram_gb": 4.0,
                    "python": "3.11", "platform": "Linux", "load_avg_start": 0.1},
        "params": topology.MODES["quick"],
        "topologies": {"sprawl": _topology(800.0, 10.0, 100.0, 20.0),
                       "optimized": _topology(400.0, 5.0, 150.0, 10.0),
                       "single": _topology(200.0, 3.0, 200.0, None)},
        "skipped": {"graphql": "no field answers yet"},
        "pool": {"speedup": 1.8, "concurrent_requests": 4, "nodes": 10, "edges": 20,
                 "wall_s_workers_1": 2.0, "wall_s_workers_2": 1.1, "all_in_pool": True,
                 "task_s_workers_1": 1.9, "task_s_workers_2": 2.0},
        "cache": {"miss_ms": 100.0, "l1_hit_ms": 2.0, "redis_hit_ms": 4.0, "keys": 3,
                  "miss_over_l1": 50.0, "miss_over_redis": 25.0, "levels_confirmed": True},
        "hop": {"in_process": {"median_us": 10.0, "p99_us": 20.0},
                "http": {"median_us": 500.0, "p99_us": 900.0}, "http_over_in_process": 50.0}}
    out["ratios"] = report.ratios(out)
    out["claims"] = report.claims(out["ratios"])
    return out


def test_throughput_over_rounds_is_total_requests_over_total_time() -> None:
    tp = _topology(1.0, 1.0, 150.0, None)["throughput"]
    assert tp["requests"] == 600 and tp["seconds"] == 4.0 and tp["rps"] == 150.0
    assert tp["errors"] == 2 and tp["statuses"] == {"200": 598, "503": 2}


def test_ratios_and_claims(result: dict[str, Any]) -> None:
    r = result["ratios"]
    assert r["optimized/sprawl"]["pss_loaded"] == 0.5
    assert r["optimized/sprawl"]["startup"] == 0.5
    assert r["optimized/sprawl"]["throughput"] == 1.5
    assert r["optimized/sprawl"]["dag_run_p50"] == 0.5
    assert r["single/sprawl"]["dag_run_p50"] is None  # not measured: no ratio, no crash
    assert r["optimized/sprawl"]["graphql_p50"] is None
    assert r["hop_http/in_process"] == 50.0
    claims = "\n".join(result["claims"])
    assert "optimized uses 50% less PSS than sprawl after load" in claims
    assert "beats the claim" in claims
    assert "optimized is healthy in 50% less time" in claims and "misses the claim" in claims
    assert "single is healthy in 70% less time" in claims and "meets the claim" in claims


def test_markdown_shows_every_figure_and_what_was_skipped(result: dict[str, Any]) -> None:
    table = report.markdown(result)
    assert "| PSS after load | 800.0 MB | 400.0 MB | 200.0 MB |" in table
    assert "(1 errors)" in table  # errors are shown, not hidden
    assert "150.0 req/s (2 errors of 600)" in table
    assert "- `graphql`: no field answers yet" in table
    assert "speed-up 1.8x" in table and "confirmed by the cache counters" in table
    assert "2 CPUs (cpu), 4.0 GB RAM" in table


def test_write_produces_json_tables_and_png(result: dict[str, Any], tmp_path: Path) -> None:
    paths = topology.write(result, tmp_path)
    assert {p.name for p in paths} >= {"latest.md", "latest.png"}
    assert all(p.stat().st_size > 0 for p in paths)
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bem_bench_runs_the_checkout_script(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run",
                        lambda cmd, **_: seen.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    assert main(["bench", "--quick", "--results", str(tmp_path)]) == 0
    assert seen == [[sys.executable, str(REPO / "benchmarks" / "topology.py"), "--quick",
                     "--results", str(tmp_path)]]


def test_bem_bench_without_the_checkout_says_so(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "site-packages" / "bem" / "__init__.py"
    monkeypatch.setattr(bem, "__file__", str(fake))
    assert main(["bench"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "source checkout" in err and "topology.py does not exist" in err


def test_import_probe_reports_memory_per_layer() -> None:
    steps = imports.probe([("orjson", ("orjson",)), ("bem graph model", ("bem.models.graph",))])
    assert [s["layer"] for s in steps] == ["python", "orjson", "bem graph model"]
    assert all(s["VmRSS"] >= s["RssAnon"] > 0 for s in steps)
    assert steps[2]["VmRSS"] > steps[0]["VmRSS"]  # pydantic and the model were loaded


def test_a_series_that_only_failed_shows_its_errors_and_no_percentiles() -> None:
    summary = Samples(errors=3, examples=["503 busy"]).summary(concurrency=4)
    assert summary["p50_ms"] is None and summary["errors"] == summary["requests"] == 3
    assert report._latency_cell(summary) == "- / - / - (3 errors)"
