"""The compose files, checked without a Docker engine.

PyYAML reads them as Compose would (merge keys included); `docker compose config` (the real
Compose v2, client-side) then resolves them, profiles included.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bem.cli import build_parser
from bem.clusters import ALL_SERVICES, SERVE_TARGETS, members
from bem.clusters.health_cli import default_url
from bem.settings import load_settings
from tests.deploy.files import (
    CLUSTER_SERVICE,
    DEPLOY,
    DESIGN_PORTS,
    REPO,
    TUNING,
    compose_command,
    interpolation_default,
    load_yaml,
    ports_of,
    resolved,
    setting_names,
)
from tests.deploy.test_image import image_health_timeout

OPTIMIZED = DEPLOY / "docker-compose.optimized.yml"
LEGACY = DEPLOY / "docker-compose.legacy.yml"
PROFILES = {
    "minimal": {"compute-cluster", "logic-cluster", "redis-cache"},
    "development": {"compute-cluster", "logic-cluster", "redis-cache", "api-gateway"},
    "monitoring": {"compute-cluster", "logic-cluster", "redis-cache", "prometheus", "grafana",
                   "node-exporter", "jaeger"},
    "full": {"compute-cluster", "logic-cluster", "redis-cache", "api-gateway", "prometheus",
             "grafana", "node-exporter", "jaeger"},
}
SCALABLE = ("compute-cluster", "logic-cluster")
# the documented health endpoint of each upstream image, on its own port
UPSTREAM_HEALTH = {"prometheus": "http://localhost:9090/-/healthy",
                   "grafana": "http://localhost:3000/api/health",
                   "node-exporter": "http://localhost:9100/metrics",
                   "jaeger": "http://localhost:14269/"}


@pytest.fixture(scope="module")
def optimized() -> dict[str, Any]:
    return load_yaml(OPTIMIZED)["services"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def legacy() -> dict[str, Any]:
    return load_yaml(LEGACY)["services"]  # type: ignore[no-any-return]


def bem_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if "bem:" in s.get("image", "")}


def container_ports(service: dict[str, Any]) -> set[int]:
    published = {int(str(p).rsplit(":", 1)[-1]) for p in service.get("ports", [])}
    return published | {int(p) for p in service.get("expose", [])}


def host_ports(service: dict[str, Any]) -> list[int]:
    found = []
    for spec in service.get("ports", []):
        # [ip:]host:container, split on the colons outside ${NAME:-default}
        host = re.split(r":(?![^{]*\})", str(spec))[-2]
        found.append(int(interpolation_default(host) or host))
    return found


# --- profiles, ports, scaling --------------------------------------------------------------
def test_profiles_are_exactly_the_guides(optimized: dict[str, Any]) -> None:
    members: dict[str, set[str]] = {}
    for name, service in optimized.items():
        assert service.get("profiles"), f"{name} has no profile"
        for profile in service["profiles"]:
            members.setdefault(profile, set()).add(name)
    assert members == PROFILES


def test_dependencies_run_in_every_profile_of_their_dependents(
        optimized: dict[str, Any]) -> None:
    for name, service in optimized.items():
        for dep in service.get("depends_on", {}):
            assert dep in optimized, f"{name} depends on unknown {dep}"
            assert set(service["profiles"]) <= set(optimized[dep]["profiles"]), (name, dep)


def test_cluster_ports_match_the_design(optimized: dict[str, Any]) -> None:
    assert {svc: load_settings().port_of(svc) for svc in ALL_SERVICES} == DESIGN_PORTS
    for cluster, name in CLUSTER_SERVICE.items():
        service = optimized[name]
        assert container_ports(service) == set(ports_of(cluster)), name
        assert service["command"] == [cluster]
        assert service["environment"]["NODE_ROLE"] == cluster  # the HEALTHCHECK reads it
    assert container_ports(optimized["redis-cache"]) == {6379}


def test_scalable_clusters_have_no_fixed_name_or_host_port(optimized: dict[str, Any]) -> None:
    for name, service in optimized.items():
        assert "container_name" not in service, name
    for name in SCALABLE:
        assert "ports" not in optimized[name], f"{name} publishes a host port: cannot --scale"
        env = optimized[name]["environment"]
        assert env["ADVERTISE_HOST"] == "auto"  # each replica registers its own IP
        assert env["REDIS_URL"] == "redis://redis-cache:6379/0"


@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_host_ports_do_not_clash(path: Path) -> None:
    ports = [p for s in load_yaml(path)["services"].values() for p in host_ports(s)]
    assert len(ports) == len(set(ports)), sorted(ports)


def test_only_the_gateway_and_the_monitoring_uis_publish(optimized: dict[str, Any]) -> None:
    publishing = {name for name, s in optimized.items() if s.get("ports")}
    assert publishing == {"api-gateway", "prometheus", "grafana", "jaeger"}
    assert sorted(host_ports(optimized["api-gateway"])) == sorted(ports_of("gateway"))


# --- resources, tuning, settings -----------------------------------------------------------
def test_resource_limits_follow_the_guide(optimized: dict[str, Any]) -> None:
    def resources(name: str) -> dict[str, Any]:
        return optimized[name]["deploy"]["resources"]  # type: ignore[no-any-return]

    assert resources("compute-cluster")["limits"] == {"cpus": "2", "memory": "4G"}
    assert resources("compute-cluster")["reservations"]["cpus"] == "1"
    assert resources("logic-cluster")["limits"] == {"cpus": "1", "memory": "2G"}
    assert resources("logic-cluster")["reservations"]["cpus"] == "0.5"
    for name, service in optimized.items():
        limits = service["deploy"]["resources"]["limits"]
        assert limits["cpus"] and limits["memory"], name


def test_tuning_variables_pass_through_with_valid_defaults(optimized: dict[str, Any]) -> None:
    for name in CLUSTER_SERVICE.values():
        env = optimized[name]["environment"]
        for var in TUNING:
            default = interpolation_default(str(env.get(var, "")))
            assert default, f"{name}: {var} is not passed through as ${{{var}:-default}}"
            load_settings(**{var.lower(): default})  # the default is a valid value


@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_every_variable_given_to_bem_is_a_setting(path: Path) -> None:
    for name, service in bem_services(load_yaml(path)["services"]).items():
        unknown = set(service["environment"]) - setting_names()
        assert not unknown, f"{name} sets variables bem does not read: {unknown}"


@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_each_containers_environment_is_valid_and_health_finds_its_ports(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in bem_services(load_yaml(path)["services"]).items():
        with monkeypatch.context() as env:
            for var, value in service["environment"].items():
                env.setenv(var, resolved(value))
            settings = load_settings()
        # `bem health` (the HEALTHCHECK) probes the first port of $NODE_ROLE
        first = members(settings.node_role)[0]
        assert default_url(settings) == f"http://127.0.0.1:{DESIGN_PORTS[first]}", name
        assert settings.redis_url and settings.advertise_host == "auto"
        assert settings.api_key_set == frozenset()  # open unless BEM_API_KEYS is given


def test_redis_persists_and_evicts_only_keys_with_a_ttl(optimized: dict[str, Any]) -> None:
    command = optimized["redis-cache"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "volatile-lru"
    assert interpolation_default(options["--maxmemory"])
    assert optimized["redis-cache"]["volumes"] == ["redis-data:/data"]


# --- healthchecks and commands -------------------------------------------------------------
def health_command(test: list[str] | str) -> list[str]:
    """The argv a healthcheck runs; exec form must not smuggle shell syntax."""
    assert isinstance(test, list) and test, test
    kind, *rest = test
    if kind == "CMD":
        assert rest and not {"&&", "||", "|", ";"} & set(rest), f"shell syntax in exec form {test}"
        return rest
    assert kind == "CMD-SHELL" and len(rest) == 1, test
    return shlex.split(rest[0])


@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_every_healthcheck_runs_a_real_check(path: Path) -> None:
    for name, service in load_yaml(path)["services"].items():
        argv = health_command(service["healthcheck"]["test"])
        if argv[0] == "bem-healthcheck":  # the image's own check (tests/deploy/test_image.py)
            assert argv == ["bem-healthcheck"], name
            assert image_health_timeout() < _seconds(service["healthcheck"]["timeout"])
        elif argv[0] == "redis-cli":
            assert argv[1:4] == ["ping", "|", "grep"] and "PONG" in argv, name
        else:
            assert argv[:3] == ["wget", "-q", "--spider"], name
            assert argv[3] == UPSTREAM_HEALTH[name]
            port = int(re.findall(r":(\d+)/", argv[3])[0])
            assert port in container_ports(service), name


def _seconds(duration: str) -> float:
    return float(duration.rstrip("s"))


@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_bem_services_serve_their_node_role(path: Path) -> None:
    for name, service in bem_services(load_yaml(path)["services"]).items():
        args = build_parser().parse_args(["serve", *service["command"]])
        assert args.target in SERVE_TARGETS
        assert service["environment"]["NODE_ROLE"] == args.target, name


def test_legacy_runs_one_container_per_service(legacy: dict[str, Any]) -> None:
    services = bem_services(legacy)
    assert sorted(s["command"][0] for s in services.values()) == sorted(ALL_SERVICES)
    for name, service in services.items():
        svc = service["command"][0]
        assert name == svc.replace("_", "-")
        assert host_ports(service) == [DESIGN_PORTS[svc]]
    assert "redis" in legacy
    assert all(s["environment"]["REDIS_URL"] == "redis://redis:6379/0"
               for s in services.values())


# --- referenced files ----------------------------------------------------------------------
@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_every_referenced_file_exists(path: Path) -> None:
    for name, service in load_yaml(path)["services"].items():
        build = service.get("build")
        if build:
            context = (path.parent / build["context"]).resolve()
            assert context == REPO
            assert (context / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("."):
                assert (path.parent / source).exists(), f"{name}: {source} is missing"


# --- the real Compose ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, str]]:
    found = compose_command(tmp_path_factory.mktemp("docker-config"))
    if isinstance(found, str):
        pytest.skip(f"docker compose is not available: {found}")
    return found


def run_compose(compose: tuple[list[str], dict[str, str]], *args: str) -> str:
    command, env = compose
    done = subprocess.run([*command, *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_docker_compose_config_accepts_the_file(compose: tuple[list[str], dict[str, str]],
                                                path: Path) -> None:
    run_compose(compose, "-f", str(path), "config", "-q")


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_docker_compose_resolves_each_profile(compose: tuple[list[str], dict[str, str]],
                                              profile: str) -> None:
    services = run_compose(compose, "-f", str(OPTIMIZED), "--profile", profile, "config",
                           "--services").split()
    assert set(services) == PROFILES[profile]


# --- building once, offline images, fast health (the container suite runs them) -------------
@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_one_service_builds_the_image_and_nothing_pulls_it(path: Path) -> None:
    services = bem_services(load_yaml(path)["services"])
    builders = [name for name, s in services.items() if "build" in s]
    assert len(builders) == 1, builders  # compose would build the same image once each
    assert all(s["pull_policy"] == "never" for s in services.values())  # no registry
    args = services[builders[0]]["build"]["args"]
    assert args == {"PYTHON_IMAGE": "${PYTHON_IMAGE:-python:3.11-slim}",
                    "WHEELHOUSE": "${WHEELHOUSE:-}"}


@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_every_image_can_be_the_offline_one(path: Path) -> None:
    offline = dict(line.split("=", 1) for line in
                   (DEPLOY / "offline" / "offline.env").read_text().splitlines()
                   if line and not line.startswith("#"))
    for name, service in load_yaml(path)["services"].items():
        variable = re.fullmatch(r"\$\{([A-Z_]+):-[^}]+\}", service["image"])
        assert variable, f"{name}: image {service['image']} is not a variable with a default"
        if variable[1] not in ("BEM_IMAGE", "BEM_LEGACY_IMAGE", "GRAFANA_IMAGE",
                               "JAEGER_IMAGE"):
            assert offline[variable[1]].startswith("bem-offline/"), name
    built = re.findall(r"\[([a-z-]+)\]=\"", (DEPLOY / "offline" / "base-images.sh").read_text())
    assert {f"bem-offline/{i}:bookworm" for i in built} >= {
        v for k, v in offline.items() if k.endswith("_IMAGE")}


@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_clusters_run_read_only_with_a_tmpfs_and_check_health_often(path: Path) -> None:
    for name, service in bem_services(load_yaml(path)["services"]).items():
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"], name
        assert _seconds(service["healthcheck"]["interval"]) <= 2, name
    redis = next(s for n, s in load_yaml(path)["services"].items() if n.startswith("redis"))
    assert _seconds(redis["healthcheck"]["interval"]) <= 1
    assert "--protected-mode" in redis["command"]  # Debian's redis refuses remote clients


@pytest.mark.parametrize("path", [OPTIMIZED, LEGACY], ids=lambda p: p.name)
def test_nothing_waits_for_a_dependency_to_turn_healthy(path: Path) -> None:
    """A `service_healthy` hop costs a health probe on every `up`; the gateway answers 503
    until a replica registers, a cluster without Redis yet starts degraded."""
    services = load_yaml(path)["services"]
    for name, service in services.items():
        for dep, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_started"}, (name, dep)
    if path == OPTIMIZED:
        assert set(services["api-gateway"]["depends_on"]) == set(SCALABLE)
        for cluster in SCALABLE:  # Redis's container still starts first
            assert set(services[cluster]["depends_on"]) == {"redis-cache"}


def test_node_exporter_binds_root_without_propagation(optimized: dict[str, Any]) -> None:
    """`propagation: rslave` fails where the host's / is a private mount."""
    [root] = [v for v in optimized["node-exporter"]["volumes"]
              if isinstance(v, dict) and v["source"] == "/"]
    assert root["read_only"] is True and "bind" not in root
