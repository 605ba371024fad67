"""`bem health [URL]`: summarise a process's /cluster-health/local; the image's HEALTHCHECK."""

from __future__ import annotations

import sys

import aiohttp
import orjson

from bem.clusters import members
from bem.settings import Settings


def default_url(settings: Settings) -> str:
    first = members(settings.node_role)[0]
    return f"http://127.0.0.1:{settings.port_of(first)}"


async def check_health(settings: Settings, url: str | None, *, as_json: bool,
                       timeout: float) -> int:
    base = (url or default_url(settings)).rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = f"http://{base}"
    # The process's own report on any port (on the dashboard's port /cluster-health is the
    # platform-wide view, which must not fail this process's HEALTHCHECK).
    target = base if "/cluster-health" in base else f"{base}/cluster-health/local"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http, \
                http.get(target) as response:
            report = orjson.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
        print(f"bem health: {target} unreachable: {exc!r}", file=sys.stderr)
        return 1
    if not isinstance(report, dict):
        print(f"bem health: {target} answered something that is not a health report",
              file=sys.stderr)
        return 1
    if as_json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"{report.get('cluster', '?')} ({report.get('instance', '?')}): "
              f"{report.get('status')}")
        for name, svc in sorted(report.get("services", {}).items()):
            print(f"  {name:<16} {svc.get('status'):<5} {svc.get('url') or ''}")
        for name, checks in sorted(report.get("checks", {}).items()):
            entry = checks[0] if checks else {}
            detail = entry.get("output") or entry.get("observedValue", "")
            print(f"  {name:<22} {entry.get('status'):<5} {detail}")
    return 0 if report.get("status") in ("pass", "warn") else 1
