"""Data across installs: `bem backup` / `bem restore` into fresh volumes, and
deploy/migrate.sh from the legacy layout (its rollback first, a failure injected), nothing
lost either way. The image runs Debian's Python 3.11.2, where `bem restore` used to crash
after writing the keys."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.containers.conftest import Images
from tests.containers.engine import Docker
from tests.containers.figures import Figures
from tests.containers.stack import LEGACY, OFFLINE_ENV, Stack, http_json, wait_for
from tests.containers.test_optimized import traffic
from tests.faults.support import Load, Tally, sample_variant, until_sent
from tests.support import REPO

NOTE = "kept across installs\n"
COMPOSE = "docker compose -f deploy/docker-compose.optimized.yml"
# Stands in for the docker CLI in migrate.sh: the real one, but the validation of the
# callback engine's port fails, as a broken new layout would.
BROKEN_VALIDATION = """#!/bin/sh
case "$*" in
  *"bem health http://127.0.0.1:5002"*) echo "injected: validation fails" >&2; exit 1 ;;
esac
exec {docker} "$@"
"""


def put_data(gateway: str, stack: Stack, data_service: str) -> dict[str, Any]:
    """A stored graph, processed events and a file in /data; what must come back."""
    status, stored = http_json(gateway + "/graph_runtime/graphs", sample_variant(0, "kept"))
    assert status == 201, stored
    events = [{"idempotency_key": f"kept-{i}", "type": "bid", "node": "V04"} for i in range(5)]
    status, accepted = http_json(gateway + "/callback_engine/events", {"events": events})
    assert status == 202, accepted
    ids = [e["event_id"] for e in accepted["events"]]
    wait_for(lambda: all(http_json(f"{gateway}/callback_engine/events/{i}")[1].get("status")
                         == "processed" for i in ids), 60, "the events processed")
    [holder] = stack.containers(data_service)
    wrote = stack.exec(holder, "sh", "-c", f"printf '{NOTE}' > /data/note.txt")
    assert wrote.returncode == 0, wrote.stderr
    return {"graph_id": stored["graph_id"], "events": ids}


def check_data(gateway: str, stack: Stack, data_service: str, kept: dict[str, Any]) -> None:
    status, graph = http_json(f"{gateway}/graph_runtime/graphs/{kept['graph_id']}")
    assert status == 200 and graph["name"] == "kept 0", graph
    for event in kept["events"]:
        status, record = http_json(f"{gateway}/callback_engine/events/{event}")
        assert status == 200 and record["status"] == "processed", record
    [holder] = stack.containers(data_service)
    assert stack.exec(holder, "cat", "/data/note.txt").stdout.decode() == NOTE


def test_backup_and_restore_into_fresh_volumes(docker: Docker, images: Images) -> None:
    source, target = Stack(docker, "bemtest-source"), Stack(docker, "bemtest-target")
    try:
        source.up(profile="development")
        gateway = source.url("GRAPHQL_HOST_PORT")
        wait_for(lambda: http_json(gateway + "/graph_runtime/sample")[0] == 200, 60, "routing")
        kept = put_data(gateway, source, "compute-cluster")
        # the guide's commands (docs/deployment.md section 5), streamed through the host
        archive = source.compose("exec", "-T", "compute-cluster", "bem", "backup", "-o", "-",
                                 timeout=120).stdout
        assert len(archive) > 1000
        source.down()
        target.up(profile="development")
        restored = target.compose("exec", "-T", "compute-cluster", "bem", "restore", "-",
                                  input=archive, timeout=120)
        assert b"bem restore: done" in restored.stderr, restored.stderr
        gateway = target.url("GRAPHQL_HOST_PORT")
        wait_for(lambda: http_json(gateway + "/graph_runtime/sample")[0] == 200, 60, "routing")
        check_data(gateway, target, "logic-cluster", kept)  # /data is shared by both
    finally:
        source.down()
        target.down()


def migrate(docker: Docker, env: dict[str, str], backups: Path,
            wrapper: Path | None = None) -> subprocess.CompletedProcess[str]:
    offline = dict(line.split("=", 1) for line in OFFLINE_ENV.read_text().splitlines()
                   if line and not line.startswith("#"))
    return subprocess.run(
        ["bash", str(REPO / "deploy" / "migrate.sh"), "--profile", "development",
         "--backup-dir", str(backups)], cwd=REPO, capture_output=True, text=True,
        timeout=900, check=False,
        env={**docker.env, **offline, **env, "DOCKER": str(wrapper or docker.cli)})


def test_migrate_rolls_back_then_migrates_and_nothing_is_lost(
        docker: Docker, images: Images, figures: Figures, tmp_path: Path) -> None:
    legacy = Stack(docker, "bem-legacy", LEGACY)  # migrate.sh's own project names
    optimized = Stack(docker, "bem", env=legacy.env)
    try:
        seconds = legacy.up()
        figures.record("up_legacy", f"{seconds:.1f} s", "docker compose --env-file "
                       "deploy/offline/offline.env -f deploy/docker-compose.legacy.yml up -d "
                       "--wait", note="10 containers")
        gateway = legacy.url("GRAPHQL_HOST_PORT")
        wait_for(lambda: http_json(gateway + "/graph_runtime/sample")[0] == 200, 60, "routing")
        kept = put_data(gateway, legacy, "dag-alpha")
        legacy_memory(legacy, figures)

        wrapper = tmp_path / "docker"
        wrapper.write_text(BROKEN_VALIDATION.format(docker=docker.cli))
        wrapper.chmod(0o755)
        failed = migrate(docker, legacy.env, tmp_path / "backups", wrapper)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "rolled back: the legacy layout is running" in failed.stderr, failed.stderr
        assert not optimized.containers("compute-cluster")
        check_data(gateway, legacy, "dag-alpha", kept)

        done = migrate(docker, legacy.env, tmp_path / "backups")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "migrated: profile development is running" in done.stdout
        # every old client's request replayed from the gateway, and all compatible
        replayed = re.search(r"^(\d+)/(\d+) compatible$", done.stdout, re.M)
        assert replayed and replayed[1] == replayed[2] and int(replayed[1]) > 0, done.stdout
        assert not legacy.containers("graphql")
        assert len(list((tmp_path / "backups").glob("bem-legacy-*.tar.gz"))) == 2
        new_gateway = optimized.url("GRAPHQL_HOST_PORT")
        wait_for(lambda: http_json(new_gateway + "/graph_runtime/sample")[0] == 200, 60,
                 "the optimized gateway routing")
        check_data(new_gateway, optimized, "compute-cluster", kept)
    finally:
        optimized.down()
        legacy.down()


def legacy_memory(legacy: Stack, figures: Figures) -> None:
    """The same traffic as the optimized layout's figure, then `docker stats`."""
    tally = Tally("containers_legacy_traffic")

    async def drive() -> None:
        async with Load(legacy.url("GRAPHQL_HOST_PORT"), traffic(), tally, concurrency=4,
                        max_requests=400):
            await until_sent(tally, 400, limit=120)

    asyncio.run(drive())
    # Seen on a loaded machine: a request or two of 400 answered 503 by the legacy gateway,
    # a peer's registration missing for a moment (nine processes at 0.5 CPU each). This is
    # the memory figure's warm-up, not a reliability test: counted, shown, bounded.
    failed = tally.total("failed")
    assert failed <= 8, tally.failures
    figures.record("memory_legacy", legacy.stats(),
                   "docker stats --no-stream (legacy layout, after 400 requests)",
                   note="the file's defaults: WORKERS=1 pool process per service" + (
                       f"; {failed} of {tally.total()} warm-up requests failed: "
                       f"{tally.failures[:1]}" if failed else ""))
    assert len(legacy.stats()) == 10
