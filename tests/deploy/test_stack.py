"""deploy/docker-stack.yml against docker-compose.optimized.yml: the same clusters, settings
and checks, plus what Swarm needs (tests/containers/test_swarm.py deploys it for real)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.files import CLUSTER_SERVICE, DEPLOY, load_yaml, ports_of, resolved

STACK = DEPLOY / "docker-stack.yml"
ROLLED = ("compute-cluster", "logic-cluster")


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return load_yaml(STACK)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(DEPLOY / "docker-compose.optimized.yml")["services"]  # type: ignore[no-any-return]


def test_the_same_services_settings_and_checks_as_compose(stack: dict[str, Any],
                                                          compose: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(services) == {*CLUSTER_SERVICE.values(), "redis-cache"}
    for name in CLUSTER_SERVICE.values():
        mine, theirs = services[name], compose[name]
        assert mine["command"] == theirs["command"], name
        expected = {k: v for k, v in theirs["environment"].items() if k != "DATA_DIR"}
        assert mine["environment"] == expected, name
        assert mine["healthcheck"] == theirs["healthcheck"], name
        resources = mine["deploy"]["resources"]
        reserved = resources["reservations"]  # a variable: the scheduler places by it
        reserved["cpus"] = resolved(reserved["cpus"])
        assert resources == theirs["deploy"]["resources"], name
        assert mine["read_only"] is True and mine["init"] is True
    assert services["redis-cache"]["command"] == compose["redis-cache"]["command"]


def test_rolling_updates_start_the_new_task_first(stack: dict[str, Any]) -> None:
    for name in ROLLED:
        update = stack["services"][name]["deploy"]["update_config"]
        assert update["order"] == "start-first" and update["parallelism"] == 1, name
        assert update["failure_action"] == "rollback"
        assert stack["services"][name]["stop_grace_period"] == "30s"  # > GRACE_PERIOD: drains


def test_no_virtual_ip_and_host_mode_ports(stack: dict[str, Any]) -> None:
    """The VIP and the ingress mesh need iptables, which the engine may not manage."""
    for name, service in stack["services"].items():
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name
    ports = stack["services"]["api-gateway"]["ports"]
    assert {p["mode"] for p in ports} == {"host"}
    assert sorted(p["target"] for p in ports) == sorted(ports_of("gateway"))


def test_backends_sit_on_an_internal_network(stack: dict[str, Any]) -> None:
    """ADVERTISE_HOST=auto takes the address of the default route's interface: on an
    internal overlay network a replica has no other, so it registers the reachable one."""
    assert stack["networks"]["backend"] == {"driver": "overlay", "internal": True}
    for name in (*ROLLED, "redis-cache"):
        assert stack["services"][name]["networks"] == ["backend"], name
    assert stack["services"]["api-gateway"]["networks"] == ["backend", "edge"]
