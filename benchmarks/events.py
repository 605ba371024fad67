"""Events processed per second by the callback engine at CALLBACK_BATCH_SIZE 1, 10 and 100.

    .venv/bin/python benchmarks/events.py [--events 5000] [--batch-sizes 1 10 100]
                                          [--appendfsync everysec|always] [--repeat 3]

For each batch size, on a fresh private redis-server (append-only; fsync every second as in
deploy/, or after every write with --appendfsync always, as in the tests): append a backlog
of N events to the durable log with the service's own append script (the mix of the seven
pulse types over the ten sample nodes), then start the real
`bem serve compute` and `bem serve logic` processes with that CALLBACK_BATCH_SIZE and wait
until the consumer has finished every event. The rate is measured from the records
themselves: (N - 1) / (last finished_at - first finished_at), so process start-up and
polling do not count. With --repeat, the batch sizes are measured in turn, round after
round, and the median rate is reported (the machine may be shared). Every event is
processed for real: routing, callbacks, its record stored and its pulses published on the
Redis channel, atomically.

Writes benchmarks/results/events-<appendfsync>-<date>-<host>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support when run as a script

import httpx  # noqa: E402
import orjson  # noqa: E402
import redis as redis_sync  # noqa: E402
from tests.support import Topology, redis_server  # noqa: E402

from bem.runtime.redis_link import RedisLink  # noqa: E402
from bem.services.callback_engine import redislog  # noqa: E402
from bem.services.callback_engine.models import PulseEvent  # noqa: E402
from bem.services.callback_engine.redislog import RedisLog  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TYPES = ("bid", "occupancy", "compliancy", "fit", "investment", "decay", "reject")
CHUNK = 1000  # events per append, as the API's largest request


def backlog(n: int) -> list[dict[str, Any]]:
    now = time.time()
    return [{**PulseEvent(idempotency_key=f"bench-{i}", type=TYPES[i % len(TYPES)],
                          node=f"V{i % 10 + 1:02d}").model_dump(mode="json"),
             "accepted_at": now} for i in range(n)]


async def prefill(url: str, n: int) -> float:
    """Append n events; returns the append rate (events/s) through the Lua script."""
    link = RedisLink(url)
    await link.start()
    try:
        log = RedisLog(link, "benchmark-prefill", retention=86_400)
        await log.start()
        events = backlog(n)
        start = time.perf_counter()
        for i in range(0, n, CHUNK):
            await log.append(events[i:i + CHUNK])
        return n / (time.perf_counter() - start)
    finally:
        await link.close()


def wait_drained(url: str, n: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=30) as http:
        while True:
            stats = http.get("/stats").json()
            if stats["processed"] + stats["failed"] >= n or time.monotonic() > deadline:
                return stats  # type: ignore[no-any-return]
            time.sleep(0.2)


def measure(batch_size: int, n: int, fsync: str) -> dict[str, Any]:
    with redis_server() as redis:
        with redis_sync.Redis.from_url(redis.url) as admin:
            admin.config_set("appendfsync", fsync)
        append_rate = asyncio.run(prefill(redis.url, n))
        load = os.getloadavg()[0]
        with Topology(["compute", "logic"], redis_url=redis.url,
                      callback_batch_size=batch_size) as topo:
            stats = wait_drained(topo.url("callback_engine"), n, timeout=max(120, n / 20))
        direct = redis_sync.Redis.from_url(redis.url)
        try:
            finished = sorted(orjson.loads(v)["finished_at"]
                              for v in direct.hvals(redislog.RECORDS))
        finally:
            direct.close()
    if stats["processed"] != n:
        raise SystemExit(f"batch {batch_size}: {stats['processed']} of {n} processed: {stats}")
    window = finished[-1] - finished[0]
    return {"batch_size": batch_size, "events": n, "seconds": round(window, 3),
            "events_per_second": round((n - 1) / window, 1),
            "append_events_per_second": round(append_rate, 1),
            "failed": stats["failed"], "load_average_before": round(load, 2)}


def summarise(runs: list[dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    out = []
    for size in sizes:
        rates = sorted(r["events_per_second"] for r in runs if r["batch_size"] == size)
        out.append({"batch_size": size, "median_events_per_second": statistics.median(rates),
                    "min": rates[0], "max": rates[-1], "runs": len(rates)})
    return out


def table(summary: list[dict[str, Any]], events: int) -> str:
    lines = ["| CALLBACK_BATCH_SIZE | events per run | events processed / s, median | "
             "min - max | runs |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['batch_size']} | {events} | {s['median_events_per_second']} | "
              f"{s['min']} - {s['max']} | {s['runs']} |" for s in summary]
    return "\n".join(lines)


def redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return out.stdout.split()[2].removeprefix("v=") if out.returncode == 0 else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="backlog per batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--appendfsync", choices=["everysec", "always"], default="everysec",
                        help="Redis fsync policy (deploy/ uses everysec)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the batch sizes")
    args = parser.parse_args()
    rows = []
    for round_ in range(1, args.repeat + 1):
        for size in args.batch_sizes:
            print(f"round {round_}, CALLBACK_BATCH_SIZE={size}: {args.events} events ...",
                  flush=True)
            rows.append(measure(size, args.events, args.appendfsync))
            print(f"  {rows[-1]['events_per_second']} events/s", flush=True)
    summary = summarise(rows, args.batch_sizes)
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "host": socket.gethostname(), "machine": platform.machine(),
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "redis": redis_version(), "appendfsync": args.appendfsync,
              "command": " ".join(["benchmarks/events.py", *sys.argv[1:]]),
              "summary": summary, "runs": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"events-{args.appendfsync}-{dt.date.today().isoformat()}-{socket.gethostname()}"
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(summary, args.events))
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
