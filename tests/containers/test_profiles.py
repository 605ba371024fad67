"""The other compose profiles that run without Grafana (Debian packages none, and no
registry is reachable): minimal, and monitoring without it - Prometheus scraping every
cluster through Docker's DNS, node-exporter reading the host's root."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.containers.conftest import Images
from tests.containers.engine import Docker
from tests.containers.figures import Figures
from tests.containers.stack import Stack, http_json, wait_for
from tests.deploy.files import CLUSTER_SERVICE, ports_of

COMPOSE = "docker compose --env-file deploy/offline/offline.env -f " \
          "deploy/docker-compose.optimized.yml"
MONITORED = ("compute-cluster", "logic-cluster", "redis-cache", "prometheus", "node-exporter")


@pytest.fixture
def stack(docker: Docker, images: Images, request: pytest.FixtureRequest) -> Stack:
    made = Stack(docker, f"bemtest-{request.node.name.split('_')[1]}")
    request.addfinalizer(made.down)
    return made


def test_minimal_every_port_of_both_backends_healthy(stack: Stack, figures: Figures) -> None:
    seconds = stack.up(profile="minimal")
    figures.record("up_minimal", f"{seconds:.1f} s",
                   f"{COMPOSE} --profile minimal up -d --wait", note="3 containers")
    for cluster in ("compute", "logic"):
        [name] = stack.containers(CLUSTER_SERVICE[cluster])
        for port in ports_of(cluster):  # the full `bem health`, as migrate.sh validates
            done = stack.exec(name, "bem", "health", f"http://127.0.0.1:{port}")
            assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert not stack.containers("api-gateway")


def test_monitoring_prometheus_scrapes_every_cluster_and_the_node(stack: Stack,
                                                                  figures: Figures) -> None:
    seconds = stack.up(*MONITORED, profile="monitoring")
    figures.record("up_monitoring", f"{seconds:.1f} s",
                   f"{COMPOSE} --profile monitoring up -d --wait {' '.join(MONITORED)}",
                   note="5 containers, Debian's prometheus 2.42 and node-exporter 1.5")
    prometheus = stack.url("PROMETHEUS_HOST_PORT")

    def targets_up() -> dict[str, str]:
        status, body = http_json(prometheus + "/api/v1/query?query=up")
        assert status == 200, body
        found = {r["metric"]["job"]: r["value"][1] for r in body["data"]["result"]}
        wanted = ("bem-compute", "bem-logic", "node", "prometheus")
        return found if all(found.get(job) == "1" for job in wanted) else {}

    found = wait_for(targets_up, 120, "every target scraped and up", every=2)
    assert "bem-gateway" not in found  # no gateway in this profile
    status, rules = http_json(prometheus + "/api/v1/rules")
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"BemClusterDown", "BemRedisDown"} <= names, names
    query = quote('node_filesystem_size_bytes{mountpoint="/"}')
    status, node = http_json(f"{prometheus}/api/v1/query?query={query}")
    assert status == 200 and node["data"]["result"], "node-exporter reads the host's / " \
                                                     "through /rootfs"
