"""Gateway throughput: requests per second through REST routing and `/graphql`, against the
backend on its own port and against nginx in front of it, on the same machine in the same run.

    .venv/bin/python benchmarks/gateway.py [--seconds 8] [--connections 32] [--rounds 2]

Needs wrk and redis-server; nginx (`scripts/system-deps` installs all three from Debian's
packages) for the peer an operator would put there instead, else its rows say
"skipped: nginx not installed". Each case is loaded by wrk (one thread, C and epoll, so the
load generator takes little of the CPU the servers need) for `--seconds`, in `--rounds`
interleaved rounds against machine drift; the median round is reported, with the CPU time
the server processes spent per request (user + system, pool workers included): on a machine
shared with other work, rates move with the load but CPU per request barely does. Cases:

- `bare`: a FastAPI app with one `GET /ping` on uvicorn (uvloop + httptools, as the
  clusters run), the ceiling for any Python endpoint on this machine;
- `backend`: sfde `GET /formulas/roi` on the compute process's own port;
- `nginx`: the same request through nginx (one worker, keep-alive connections to sfde);
- `rest`: the same request through the gateway's REST routing (`:graphql/sfde/...`);
- `graphql`: the same formula through `POST /graphql`;
- `graphql_typename`: `{ __typename }`, GraphQL's own cost with no service call;

in the `optimized` topology (compute, logic and gateway processes sharing a Redis: the
gateway reaches sfde over loopback HTTP) and in `single` (one process: REST routing goes
through ASGI and GraphQL resolvers are in-process calls). API keys are off and the rate
limit is raised out of the way; the access middleware still runs on every request.

Writes benchmarks/results/gateway-<date>-<host>.json and .md (a markdown table).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support when run as a script

from tests.support import Topology, free_port, redis_server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FORMULA_PATH = "/formulas/roi"
FORMULA_QUERY = '{ formula(name: "roi") { name title parameters { name unit } } }'
UNLIMITED = {"rate_limit_rps": "1000000", "rate_limit_burst": "1000000",
             "log_level": "warning"}

bare_app = FastAPI()


@bare_app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


# --- wrk -------------------------------------------------------------------------------------
def wrk_binary() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("benchmarks/gateway.py needs wrk, the HTTP load generator: "
                 "apt-get install -y wrk (Debian/Ubuntu) or brew install wrk (macOS)")
    return wrk


LUA = """wrk.method = %s
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def parse_wrk(output: str) -> dict[str, Any]:
    def number(pattern: str) -> float:
        found = re.search(pattern, output)
        return float(found.group(1)) if found else 0.0

    def millis(label: str) -> float | None:
        found = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if not found:
            return None
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
        return round(float(found.group(1)) * scale, 3)

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    return {"rps": number(r"Requests/sec:\s+([\d.]+)"),
            "requests": int(number(r"(\d+) requests in")),
            "p50_ms": millis("50%"), "p99_ms": millis("99%"),
            "non_2xx": int(number(r"Non-2xx or 3xx responses: (\d+)")),
            "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and their children (pool workers)."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in (root, *root.children(recursive=True)):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def run_wrk(url: str, seconds: int, connections: int, method: str = "GET",
            body: str = "") -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bem-gw-") as script:
        script.write(LUA % (lua_string(method), lua_string(body)))
        script.flush()
        out = subprocess.run([wrk_binary(), "-t1", f"-c{connections}", f"-d{seconds}s",
                              "--timeout", "10s", "--latency", "-s", script.name, url],
                             capture_output=True, text=True, timeout=seconds + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    return parse_wrk(out.stdout)


# --- what runs -------------------------------------------------------------------------------
@contextmanager
def bare_server() -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.gateway:bare_app", "--host", "127.0.0.1",
         "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--log-level",
         "warning", "--no-access-log"], cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/ping")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@contextmanager
def nginx_server(backend: str, probe: str = FORMULA_PATH) -> Iterator[tuple[str, int] | None]:
    """nginx, one worker, proxying to `backend` over keep-alive connections (its URL and
    pid, once `probe` answers through it); None when nginx is not installed."""
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
    if binary is None:
        yield None
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bem-nginx-") as work:
        conf = Path(work) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=work, port=port,
                                          backend=backend.rsplit(":", 1)[1]))
        proc = subprocess.Popen([binary, "-c", str(conf), "-p", work],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(url + probe)
            yield url, proc.pid
        finally:
            proc.terminate()
            proc.wait(10)


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


def cases(topo: Topology, label: str, nginx: str | None) -> list[dict[str, Any]]:
    gateway, sfde = topo.url("graphql"), topo.url("sfde")
    graphql = json.dumps({"query": FORMULA_QUERY})
    typename = json.dumps({"query": "{ __typename }"})
    peer = [] if nginx is None else [
        {"case": "nginx", "topology": label, "url": nginx + FORMULA_PATH}]
    return [
        {"case": "backend", "topology": label, "url": sfde + FORMULA_PATH},
        *peer,
        {"case": "rest", "topology": label, "url": gateway + "/sfde" + FORMULA_PATH},
        {"case": "graphql", "topology": label, "url": gateway + "/graphql", "method": "POST",
         "body": graphql},
        {"case": "graphql_typename", "topology": label, "url": gateway + "/graphql",
         "method": "POST", "body": typename},
    ]


def check(case: dict[str, Any]) -> None:
    """One request before timing: a case that fails is a bug to fix, not a figure."""
    answer = httpx.request(case.get("method", "GET"), case["url"],
                           content=case.get("body", "").encode() or None,
                           headers={"content-type": "application/json"}, timeout=30)
    if answer.status_code != 200 or '"errors"' in answer.text:
        raise RuntimeError(f"{case['case']} ({case['topology']}) answers "
                           f"{answer.status_code}: {answer.text[:300]}")


def measure(all_cases: list[dict[str, Any]], seconds: int, connections: int,
            rounds: int, servers: list[int]) -> list[dict[str, Any]]:
    """Each case in each round; the median round by rate, with the servers' CPU time per
    request (every server process is counted in every case: idle ones add next to nothing)."""
    for case in all_cases:
        check(case)
        run_wrk(case["url"], 1, connections, case.get("method", "GET"), case.get("body", ""))
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(all_cases))}
    for r in range(rounds):
        for i, case in enumerate(all_cases):
            print(f"  round {r + 1}/{rounds}: {case['topology']:9} {case['case']:17}",
                  end=" ", flush=True)
            cpu = cpu_seconds(servers)
            result = run_wrk(case["url"], seconds, connections, case.get("method", "GET"),
                             case.get("body", ""))
            used = cpu_seconds(servers) - cpu
            result["cpu_ms_per_request"] = round(1000 * used / max(1, result["requests"]), 3)
            print(f"{result['rps']:9.0f} req/s  {result['cpu_ms_per_request']:7.3f} CPU ms/req",
                  flush=True)
            runs[i].append(result)
    out = []
    for i, case in enumerate(all_cases):
        ordered = sorted(runs[i], key=lambda x: x["rps"])
        median = ordered[len(ordered) // 2]
        out.append({**{k: v for k, v in case.items() if k != "body"}, **median,
                    "rounds_rps": [x["rps"] for x in runs[i]]})
    return out


# --- report ----------------------------------------------------------------------------------
CASE_TEXT = {
    "bare": "bare FastAPI `GET /ping` (uvicorn)",
    "backend": "sfde `GET /formulas/roi` on its own port",
    "nginx": "the same through nginx (1 worker, keep-alive upstream)",
    "rest": "the same through gateway REST routing",
    "graphql": "the same formula through `POST /graphql`",
    "graphql_typename": "`{ __typename }` through `POST /graphql`",
}


def _ratio(r: dict[str, Any], base: dict[str, Any] | None) -> str:
    return f"{r['rps'] / base['rps']:.2f}" if base else "-"


def table(results: list[dict[str, Any]]) -> str:
    """One row per case; rates as a ratio of the backend's own and of nginx's, per topology."""
    of = {(r["topology"], r["case"]): r for r in results}
    rows = ["| topology | request | req/s | vs backend | vs nginx | server CPU ms/req "
            "| p50 ms | p99 ms | errors |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        errors = r["non_2xx"] + r["socket_errors"]
        rows.append(f"| {r['topology']} | {CASE_TEXT[r['case']]} | {r['rps']:.0f} | "
                    f"{_ratio(r, of.get((r['topology'], 'backend')))} | "
                    f"{_ratio(r, of.get((r['topology'], 'nginx')))} | "
                    f"{r['cpu_ms_per_request']:.3f} | {r['p50_ms']} | {r['p99_ms']} | "
                    f"{errors} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="per case and round")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median)")
    args = parser.parse_args()
    wrk_binary()
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    with redis_server() as redis, bare_server() as (bare, bare_pid):
        for label, targets in (("optimized", ["compute", "logic", "gateway"]),
                               ("single", ["single"])):
            print(f"{label}: starting {', '.join(targets)} ...", flush=True)
            with Topology(targets, redis_url=redis.url, **UNLIMITED) as topo, \
                    nginx_server(topo.url("sfde")) as nginx:
                if nginx is None and not skipped:
                    skipped.append("nginx: skipped: nginx not installed "
                                   "(scripts/system-deps installs it)")
                    print(skipped[-1], flush=True)
                # Every case of a topology is measured in the same rounds, so each ratio
                # compares figures taken under the same machine conditions.
                bare_case = {"case": "bare", "topology": label, "url": bare + "/ping"}
                servers = [bare_pid, *(c.process.pid for c in topo.clusters.values()
                                       if c.process is not None)]
                if nginx is not None:
                    servers.append(nginx[1])
                results += measure([bare_case, *cases(topo, label, nginx and nginx[0])],
                                   args.seconds, args.connections, args.rounds, servers)
    report = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "host": socket.gethostname(), "machine": platform.machine(),
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "settings": {"seconds": args.seconds, "connections": args.connections,
                           "rounds": args.rounds, "wrk_threads": 1},
              "skipped": skipped, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"gateway-{dt.date.today().isoformat()}-{socket.gethostname()}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(results)
    (RESULTS / f"{stem}.md").write_text(
        f"Gateway throughput, {report['date']}, {report['host']} ({report['cpus']} CPUs), "
        f"wrk -t1 -c{args.connections}, {args.seconds} s x {args.rounds} rounds "
        f"(median round). Command: `.venv/bin/python benchmarks/gateway.py "
        f"--seconds {args.seconds} --connections {args.connections} --rounds {args.rounds}`."
        f"\n\n{text}\n" + "".join(f"\n{line}\n" for line in skipped))
    print(text)
    print(f"written: benchmarks/results/{stem}.json and .md")


if __name__ == "__main__":
    main()
