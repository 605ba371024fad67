"""Security defaults: what is reachable, how keys are compared, what never reaches a log.

- BACKEND_BIND_HOST keeps the six backend ports on an internal interface while the gateway
  ports listen on BIND_HOST (checked on the listening sockets of a real process).
- In the production compose file, the gateway is the only service published beyond the
  host's loopback, in every profile (`docker compose config`, as Compose resolves it).
- API keys are compared in constant time: fixed-size digests, `hmac.compare_digest`, every
  configured key compared whatever matched.
- No secret in logs or answers: a cluster with BEM_API_KEYS and a password in REDIS_URL,
  at LOG_LEVEL=debug, is exercised (valid, invalid and missing keys, errors of every kind,
  the WebSocket, a Redis outage); neither its log nor any answer carries a secret. The same
  for `bem up`, which prints where Redis is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx
import psutil
import pytest
import redis as redis_sync
from websockets.sync.client import connect

from bem.clusters import ALL_SERVICES, GATEWAY_SERVICES
from bem.gateway import access
from tests.deploy.files import DEPLOY, compose_command
from tests.support import ClusterProcess, RedisServer, base_env, port_plan, redis_server

pytestmark = pytest.mark.slow

KEYS = ("key-alpha-S3CRET-4f9c2b7e", "key-beta-S3CRET-a81d07c3")
REDIS_PASSWORD = "redis-S3CRET-pw-77e1"
SECRETS = (*KEYS, REDIS_PASSWORD, "S3CRET")
NEAR_MISS = "key-alpha-S3CRET-4f9c2b7f"  # a mistyped real key is a secret too
INTERNAL = "127.0.0.2"  # another loopback address: Linux routes all of 127/8 to lo


# --- where backends listen -------------------------------------------------------------
def listening(pid: int) -> dict[int, str]:
    return {c.laddr.port: c.laddr.ip for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN}


def test_backend_bind_host_keeps_backends_on_the_internal_interface() -> None:
    plan = port_plan()
    proc = ClusterProcess("single", base_env(plan, backend_bind_host=INTERNAL), plan)
    host = {s: "127.0.0.1" if s in GATEWAY_SERVICES else INTERNAL for s in ALL_SERVICES}
    proc.url = lambda s: f"http://{host[s]}:{plan[s]}"  # type: ignore[method-assign]
    try:
        proc.start().wait_ready()
        assert proc.process is not None
        assert listening(proc.process.pid) == {plan[s]: host[s] for s in ALL_SERVICES}
        for service in ALL_SERVICES:
            if service not in GATEWAY_SERVICES:
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", plan[service]), timeout=5)
        # the gateway still reaches every backend
        routed = httpx.get(f"http://127.0.0.1:{plan['graphql']}/sfde/formulas/roi", timeout=30)
        assert routed.status_code == 200, routed.text
    finally:
        proc.cleanup()


# --- what the production compose file publishes ----------------------------------------
@pytest.mark.parametrize("profile", ["minimal", "development", "monitoring", "full"])
def test_only_the_gateway_is_published_beyond_loopback(tmp_path: Path, profile: str) -> None:
    found = compose_command(tmp_path)
    if isinstance(found, str):
        pytest.skip(f"docker compose is not available: {found}")
    command, env = found
    done = subprocess.run([*command, "-f", str(DEPLOY / "docker-compose.optimized.yml"),
                           "--profile", profile, "config", "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    exposed = {name: [p["published"] for p in service.get("ports") or ()
                      if p.get("host_ip", "0.0.0.0") not in ("127.0.0.1", "::1")]
               for name, service in json.loads(done.stdout)["services"].items()}
    assert {name for name, ports in exposed.items() if ports} <= {"api-gateway"}, exposed


# --- constant-time key comparison ------------------------------------------------------
def test_api_keys_are_compared_in_constant_time() -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = access.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    keys = frozenset(KEYS)
    with mock.patch.object(access.hmac, "compare_digest", spy):
        for candidate in (KEYS[0], NEAR_MISS, "k", "", "x" * 4096, KEYS[1]):
            compared.clear()
            valid = access.key_is_valid(candidate, keys)
            assert valid == (candidate in keys)
            # every configured key, even after a match; 32-byte digests, whatever the length
            assert len(compared) == len(keys)
            assert {len(a) for a, b in compared} | {len(b) for a, b in compared} == {32}
            assert {b for _, b in compared} == {hashlib.sha256(k.encode()).digest()
                                                for k in keys}


# --- no secret in logs or answers ------------------------------------------------------
@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[ClusterProcess, RedisServer, str]]:
    with redis_server() as redis:
        client = redis_sync.Redis.from_url(redis.url)
        client.config_set("requirepass", REDIS_PASSWORD)
        client.close()
        url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis.port}/0"
        plan = port_plan()
        proc = ClusterProcess("single", base_env(plan, redis_url=url, BEM_API_KEYS=",".join(
            KEYS), log_level="debug", rate_limit_rps=5, rate_limit_burst=40), plan)
        try:
            yield proc.start().wait_ready(), redis, url
        finally:
            proc.cleanup()


def exercise(proc: ClusterProcess) -> list[str]:
    """Requests of every kind, keys valid, invalid and missing; every answer as text."""
    gw = proc.url("graphql")
    seen: list[str] = []
    with httpx.Client(timeout=30) as http:
        def keep(answer: httpx.Response) -> None:
            seen.append(f"{answer.status_code} {dict(answer.headers)} {answer.text}")

        for headers in ({"X-API-Key": KEYS[0]}, {"Authorization": f"Bearer {KEYS[1]}"},
                        {"X-API-Key": NEAR_MISS}, {"Authorization": "Bearer " + NEAR_MISS},
                        {}):
            keep(http.get(gw + "/sfde/formulas/roi", headers=headers))
            keep(http.post(gw + "/graphql", headers=headers,
                           json={"query": "{ graph(id: \"missing\") { name } }"}))
            keep(http.post(gw + "/callback_engine/events", headers=headers,
                           json={"events": [{"idempotency_key": "k", "type": "bid",
                                             "node": "V01"}]}))
        keep(http.get(gw + f"/sfde/formulas?api_key={KEYS[0]}"))
        keep(http.get(gw + f"/nope/x?api_key={NEAR_MISS}"))
        for path in ("/cluster-health", "/health", "/metrics", "/openapi.json"):
            keep(http.get(proc.url("dashboard") + path, headers={"X-API-Key": KEYS[0]}))
            keep(http.get(proc.url("callback_engine") + path))
        keep(http.get(proc.url("dashboard") + "/", headers={"X-API-Key": KEYS[0]}))
        for _ in range(60):  # over the rate limit: 429s
            keep(http.get(gw + "/sfde/formulas", headers={"X-API-Key": NEAR_MISS}))
    ws_url = proc.url("ecm_ws").replace("http://", "ws://") + "/ws"
    with connect(f"{ws_url}?api_key={KEYS[1]}") as ws:
        for frame in ('{"type": "event", "payload": {"type": "bid"}}', "{bad", b"\x00"):
            ws.send(frame)
            seen.append(str(ws.recv(timeout=15)))
    with contextlib.suppress(Exception), connect(f"{ws_url}?api_key={NEAR_MISS}"):
        pass
    return seen


def test_no_secret_in_logs_or_answers(guarded: tuple[ClusterProcess, RedisServer, str]
                                      ) -> None:
    proc, redis, _url = guarded
    answers = exercise(proc)
    assert any(a.startswith("401") for a in answers) and any(a.startswith("429")
                                                            for a in answers)
    redis.kill()  # Redis errors in the log and in answers
    with httpx.Client(timeout=30, headers={"X-API-Key": KEYS[0]}) as http:
        down = http.post(proc.url("callback_engine") + "/events", json={"events": [
            {"idempotency_key": "k2", "type": "bid", "node": "V01"}]})
        answers.append(f"{down.status_code} {down.text}")
        deadline = time.monotonic() + 20
        while "unreachable" not in answers[-1] and time.monotonic() < deadline:
            answers.append(http.get(proc.url("callback_engine") + "/health").text)
            time.sleep(0.2)
    assert down.status_code == 503 and "unreachable" in answers[-1]
    log = proc.output()
    assert "Redis unavailable" in log and "debug" in log.lower()  # the log was written
    for secret in (*SECRETS, NEAR_MISS):
        assert secret not in log, f"{secret} in the log"
        leaked = [a[:300] for a in answers if secret in a]
        assert not leaked, leaked


def test_bem_up_does_not_print_the_redis_password(redis: RedisServer) -> None:
    client = redis_sync.Redis.from_url(redis.url)
    client.config_set("requirepass", REDIS_PASSWORD)
    client.close()
    env = base_env(port_plan(), redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:"
                                          f"{redis.port}/0")
    up = subprocess.Popen([sys.executable, "-m", "bem", "up", "--topology", "single"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
    lines = []
    try:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if "healthy in" in line or len(lines) > 200:
                break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGTERM)
        out, _ = up.communicate(timeout=60)
    printed = "".join(lines) + out
    assert "Redis at" in printed, printed
    assert REDIS_PASSWORD not in printed, printed
