"""deploy/k8s: every manifest validated against the Kubernetes API schemas (kubernetes-validate,
offline schemas shipped with the package, strict: unknown fields are errors), then checked
against the clusters, the design's ports and the settings."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from bem.clusters import CLUSTERS
from tests.deploy.files import (
    CLUSTER_SERVICE,
    DEPLOY,
    TUNING,
    load_all,
    load_yaml,
    ports_of,
    setting_names,
)

K8S = DEPLOY / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
# The oldest still-common release and the newest the package knows.
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in load_all(path)]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_kubernetes(docs: list[dict[str, Any]], version: str) -> None:
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_broken_manifest(docs: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(by_kind(docs, "Deployment")["compute-cluster"])
    container(broken)["livenessProbe"]["httpGet"]["pth"] = "/health/live"  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]
    assert kustomization["namespace"] == "bem"


def test_everything_lives_in_the_bem_namespace(docs: list[dict[str, Any]]) -> None:
    assert set(by_kind(docs, "Namespace")) == {"bem"}
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "bem", doc["metadata"]["name"]


@pytest.mark.parametrize("cluster", sorted(CLUSTERS))
def test_cluster_deployment(docs: list[dict[str, Any]], cluster: str) -> None:
    name = CLUSTER_SERVICE[cluster]
    deployment = by_kind(docs, "Deployment")[name]
    box = container(deployment)
    assert box["args"] == [cluster]
    env = {e["name"]: e for e in box["env"]}
    assert env["NODE_ROLE"]["value"] == cluster
    assert env["ADVERTISE_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    named = {p["name"]: p["containerPort"] for p in box["ports"]}
    assert list(named.values()) == ports_of(cluster)
    assert all(len(n) <= 15 for n in named)  # IANA service name limit
    probes = {kind: box[kind]["httpGet"] for kind in
              ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    assert probes["startupProbe"]["path"] in ("/health/live", "/health/ready")
    assert all(p["port"] in named for p in probes.values())
    assert set(box["resources"]) == {"requests", "limits"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_resources_follow_the_guide(docs: list[dict[str, Any]]) -> None:
    deployments = by_kind(docs, "Deployment")
    compute = container(deployments["compute-cluster"])["resources"]
    logic = container(deployments["logic-cluster"])["resources"]
    assert compute["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert compute["requests"]["cpu"] == "1"
    assert logic["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert logic["requests"]["cpu"] == "500m"


def test_services_reach_the_deployments(docs: list[dict[str, Any]]) -> None:
    deployments = by_kind(docs, "Deployment")
    for cluster, name in CLUSTER_SERVICE.items():
        service = by_kind(docs, "Service")[name]
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        port_names = {p["name"] for p in container(deployments[name])["ports"]}
        assert [p["port"] for p in service["spec"]["ports"]] == ports_of(cluster)
        assert {p["targetPort"] for p in service["spec"]["ports"]} == port_names


def test_compute_and_logic_autoscale(docs: list[dict[str, Any]]) -> None:
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"compute-cluster", "logic-cluster"}
    deployments = by_kind(docs, "Deployment")
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert "replicas" not in deployments[name]["spec"]  # the HPA owns the count
        assert hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        assert container(deployments[name])["resources"]["requests"]["cpu"]  # HPA needs it


def test_redis_is_a_statefulset_with_a_volume(docs: list[dict[str, Any]]) -> None:
    redis = by_kind(docs, "StatefulSet")["redis-cache"]
    spec = redis["spec"]
    headless = by_kind(docs, "Service")[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    [claim] = spec["volumeClaimTemplates"]
    box = container({"spec": spec})
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in box["volumeMounts"]
    args = box["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "volatile-lru"
    config = by_kind(docs, "ConfigMap")["bem-tuning"]["data"]
    assert config["REDIS_URL"] == f"redis://{spec['serviceName']}:6379/0"


def test_configuration_names_real_settings(docs: list[dict[str, Any]]) -> None:
    config = by_kind(docs, "ConfigMap")["bem-tuning"]["data"]
    assert set(TUNING) - {"CACHE_SIZE"} <= set(config)  # CACHE_SIZE is per Deployment
    assert set(config) <= setting_names()
    for deployment in by_kind(docs, "Deployment").values():
        names = {e["name"] for e in container(deployment)["env"]}
        assert "CACHE_SIZE" in names
        assert names <= setting_names()
