"""Replica discovery against a busy Redis: the per-service sorted sets vs the SCAN they replaced.

    .venv/bin/python benchmarks/registry.py [--keys 100000] [--lookups 200]

A private redis-server holds `--keys` cache entries (`bem:cache:...`, 200-byte values, as the
cache writes them) beside the registry of three processes of the `optimized` topology. Then
each lookup is timed, median and p99 over `--lookups`, with Redis's own CPU per lookup:

- `scan`: the previous discovery, `SCAN MATCH bem:registry:<service>:* COUNT 500` + MGET
  over per-replica keys, which walks the whole keyspace whatever the pattern;
- `sets`: `Registry.entries([service])`, one script reading one sorted set;
- `dashboard`: `Registry.entries()`, every service at once (what the dashboard asks).

Writes benchmarks/results/registry-<date>-<host>.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support when run as a script

from tests.support import make_settings, redis_server  # noqa: E402

from bem.clusters import PLACEMENT, members  # noqa: E402
from bem.runtime.runtime import Runtime  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SERVICE = "sfde"


async def fill(r: aioredis.Redis, keys: int) -> None:
    value = b"x" * 200
    for start in range(0, keys, 10_000):
        async with r.pipeline(transaction=False) as pipe:
            for i in range(start, min(keys, start + 10_000)):
                pipe.set(f"bem:cache:analyze:{i:064x}", value)
            await pipe.execute()


async def scan_lookup(r: aioredis.Redis, service: str) -> list[dict[str, Any]]:
    """The discovery this project used before: per-replica keys found by SCAN."""
    found = [k async for k in r.scan_iter(match=f"bem:registry:{service}:*", count=500)]
    values = await r.mget(found) if found else []
    return [orjson.loads(v) for v in values if v]


async def timed(lookup: Callable[[], Awaitable[list[Any]]], r: aioredis.Redis, n: int,
                expected: int) -> dict[str, Any]:
    for _ in range(5):
        assert len(await lookup()) == expected
    await r.config_resetstat()
    took = []
    for _ in range(n):
        start = time.perf_counter()
        await lookup()
        took.append(time.perf_counter() - start)
    stats = await r.info("commandstats")
    redis_us = sum(v["usec"] for v in stats.values())
    took.sort()
    return {"median_ms": round(1000 * statistics.median(took), 3),
            "p99_ms": round(1000 * took[int(0.99 * (n - 1))], 3),
            "redis_cpu_us_per_lookup": round(redis_us / n, 1)}


async def run(keys: int, lookups: int) -> dict[str, Any]:
    with redis_server(appendonly=False) as server:
        r = aioredis.Redis.from_url(server.url)
        runtimes = []
        try:
            await fill(r, keys)
            for cluster in ("compute", "logic", "gateway"):
                rt = Runtime(make_settings(redis_url=server.url), cluster, [], PLACEMENT)
                await rt.redis.start()
                addresses = {s: f"http://127.0.0.1:{5000 + i}"
                             for i, s in enumerate(members(cluster))}
                await rt.registry.register(addresses, pid=1)
                # The old layout beside it, one key per replica, for the SCAN to find.
                for service, url in addresses.items():
                    await r.set(f"bem:registry:{service}:{rt.instance_id}",
                                orjson.dumps({"service": service, "url": url}), px=600_000)
                runtimes.append(rt)
            registry = runtimes[0].registry
            total = sum(len(members(c)) for c in ("compute", "logic", "gateway"))
            dbsize = await r.dbsize()
            results = {
                "scan": await timed(lambda: scan_lookup(r, SERVICE), r, lookups, 1),
                "sets": await timed(lambda: registry.entries([SERVICE]), r, lookups, 1),
                "dashboard": await timed(registry.entries, r, lookups, total),
            }
        finally:
            for rt in runtimes:
                await rt.registry.deregister()
                await rt.redis.close()
            await r.aclose()
    return {"keys": keys, "dbsize": dbsize, "lookups": lookups, "results": results}


def table(report: dict[str, Any]) -> str:
    text = {"scan": f"SCAN MATCH bem:registry:{SERVICE}:* + MGET (before)",
            "sets": f"one sorted set, `{SERVICE}` (now)",
            "dashboard": "every service's set in one script (now, the dashboard)"}
    rows = ["| lookup | median ms | p99 ms | Redis CPU us per lookup |", "|---|---:|---:|---:|"]
    for name, r in report["results"].items():
        rows.append(f"| {text[name]} | {r['median_ms']} | {r['p99_ms']} | "
                    f"{r['redis_cpu_us_per_lookup']} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000, help="cache keys in Redis")
    parser.add_argument("--lookups", type=int, default=200, help="timed lookups per case")
    args = parser.parse_args()
    report = asyncio.run(run(args.keys, args.lookups))
    report["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report["host"] = socket.gethostname()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"registry-{dt.date.today().isoformat()}-{socket.gethostname()}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(report)
    (RESULTS / f"{stem}.md").write_text(
        f"Replica lookup with {report['dbsize']:,} keys in Redis ({args.keys:,} cache "
        f"entries), {report['date']}, {report['host']}; median of {args.lookups}.\n\n"
        f"{text}\n")
    print(text)
    print(f"written: benchmarks/results/{stem}.json and .md")


if __name__ == "__main__":
    main()
