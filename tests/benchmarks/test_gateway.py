"""The gateway benchmark's measuring functions: wrk's report parsed, and real short
measurements of the bare endpoint and of nginx in front of it (rate, CPU per request, no
errors, the ratios of the table). No timing is asserted."""

from __future__ import annotations

import shutil

import pytest
from benchmarks.gateway import bare_server, measure, nginx_server, parse_wrk, table
from benchmarks.gateway_layers import LAYERS
from benchmarks.gateway_layers import measure as measure_layers

WRK_OUTPUT = """Running 8s test @ http://127.0.0.1:41234/ping
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.10ms    8.31ms 120.44ms   84.12%
    Req/Sec     2.63k   310.27     3.10k    81.25%
  Latency Distribution
     50%   10.37ms
     75%   14.02ms
     90%   20.11ms
     99%   44.00ms
  20950 requests in 8.00s, 2.96MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   2618.75
Transfer/sec:    378.50KB
"""


def test_wrk_report_is_parsed() -> None:
    assert parse_wrk(WRK_OUTPUT) == {"rps": 2618.75, "requests": 20950, "p50_ms": 10.37,
                                     "p99_ms": 44.0, "non_2xx": 5, "socket_errors": 3}
    assert parse_wrk(WRK_OUTPUT.replace("99%   44.00ms", "99%    1.20s"))["p99_ms"] == 1200.0


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_a_short_real_measurement() -> None:
    with bare_server() as (url, pid):
        (result,) = measure([{"case": "bare", "topology": "t", "url": url + "/ping"}],
                            seconds=1, connections=4, rounds=1, servers=[pid])
    assert result["requests"] > 0 and result["rps"] > 0
    assert result["non_2xx"] == 0 and result["socket_errors"] == 0
    assert result["cpu_ms_per_request"] > 0
    assert "| t | bare FastAPI" in table([result])


@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("nginx") is None,
                    reason="wrk or nginx is not installed")
def test_nginx_is_measured_as_the_peer() -> None:
    with bare_server() as (url, pid), nginx_server(url, probe="/ping") as nginx:
        assert nginx is not None
        cases = [{"case": "backend", "topology": "t", "url": url + "/ping"},
                 {"case": "nginx", "topology": "t", "url": nginx[0] + "/ping"}]
        results = measure(cases, seconds=1, connections=4, rounds=1, servers=[pid, nginx[1]])
    assert all(r["requests"] > 0 and r["non_2xx"] == 0 for r in results)
    row = next(line for line in table(results).splitlines() if "through nginx" in line)
    ratio = results[1]["rps"] / results[0]["rps"]
    assert f"| {ratio:.2f} | 1.00 |" in row  # vs backend, vs nginx itself


async def test_the_layer_costs_are_measured_on_a_real_cluster() -> None:
    result = await measure_layers(requests=200, rounds=1)
    assert set(result) == {"sfde on its own", "routed through the gateway", *LAYERS}
    assert all(value > 0 for value in result.values())
    # and every layer was put back: the routed request still crosses them all
    assert all(cls.__call__.__name__ == "__call__" for cls in LAYERS.values())
