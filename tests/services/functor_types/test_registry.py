"""The registry configuration: checks, the affinity matrix, the TTL reload."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bem.services.functor_types.registry import (
    ConfigError,
    RegistrySource,
    build_registry,
    read_config,
)


@pytest.fixture
def shipped() -> dict[str, Any]:
    return copy.deepcopy(read_config(None)[1])


def test_shipped_registry_has_one_type_per_phase(shipped: dict[str, Any]) -> None:
    registry = build_registry(shipped)
    assert {t.name: t.phase for t in registry.types.values()} == {
        "stateless_spatial": "alpha", "local_calcs": "beta", "aggregator": "gamma"}
    assert registry.types["stateless_spatial"].attributes["required"] == [
        "component_density", "material_strength", "buildability_score"]


def test_affinity_is_symmetric_unit_diagonal_in_unit_interval(shipped: dict[str, Any]) -> None:
    registry = build_registry(shipped)
    assert registry.domains == ("structural", "cost", "energy", "mep", "time", "fabrication")
    m = registry.matrix
    n = len(registry.domains)
    for i in range(n):
        assert m[i][i] == 1.0
        for j in range(n):
            assert m[i][j] == m[j][i]
            assert 0.0 <= m[i][j] <= 1.0
    # values come from the file, in either order of the pair
    i, j = registry.domains.index("energy"), registry.domains.index("mep")
    assert m[i][j] == shipped["affinity"]["pairs"]["energy"]["mep"] == 0.9


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda c: c["types"]["aggregator"].update(phase="delta"), "types.aggregator.phase"),
    (lambda c: c["types"]["aggregator"]["attributes"].update(type="array"),
     "types.aggregator.attributes: must be an object schema"),
    (lambda c: c["types"]["aggregator"]["attributes"]["properties"]["roi_estimate"].update(
        default=50), "roi_estimate.default: does not satisfy its own schema"),
    (lambda c: c["types"]["aggregator"]["attributes"].update(required="x"),
     "types.aggregator.attributes: not a valid JSON Schema"),
    (lambda c: c["types"]["aggregator"]["functors"].append("check_compliance"),
     "'check_compliance' is already listed by local_calcs"),
    (lambda c: c["feeds"]["aggregator"].append("nope"), "feeds.aggregator[1]: unknown"),
    (lambda c: c["affinity"]["pairs"]["time"].update(cost=0.5), "pair given twice"),
    (lambda c: c["affinity"]["pairs"]["time"].pop("fabrication"),
     "affinity.pairs: missing time-fabrication"),
    (lambda c: c["affinity"]["pairs"]["time"].update(fabrication=1.5),
     "affinity.pairs.time.fabrication"),
    (lambda c: c["affinity"]["pairs"]["time"].update(time=1.0), "diagonal is 1"),
    (lambda c: c["affinity"]["pairs"]["time"].update(acoustics=0.1), "unknown domain"),
])
def test_inconsistent_config_names_the_key(shipped: dict[str, Any], edit: Any,
                                           needle: str) -> None:
    edit(shipped)
    with pytest.raises(ConfigError) as info:
        build_registry(shipped)
    assert needle in str(info.value)


def _write(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_override_is_reread_after_the_ttl(tmp_path: Path, shipped: dict[str, Any]) -> None:
    path = tmp_path / "types.yaml"
    _write(path, shipped)
    clock = FakeClock()
    source = RegistrySource(path, ttl=30.0, clock=clock)
    first = source.get()
    assert source.source == str(path)

    shipped["types"]["aggregator"]["functors"].append("aggregate_investment")
    _write(path, shipped)
    clock.now += 29.9
    assert source.get() is first  # still within the TTL: the file is not read
    clock.now += 0.1
    reloaded = source.get()
    assert reloaded.digest != first.digest
    assert "aggregate_investment" in reloaded.types["aggregator"].functors
    assert source.reloads == 1


def test_failed_reload_keeps_the_last_good_config(tmp_path: Path,
                                                  shipped: dict[str, Any]) -> None:
    path = tmp_path / "types.yaml"
    _write(path, shipped)
    clock = FakeClock()
    source = RegistrySource(path, ttl=1.0, clock=clock)
    good = source.get()
    path.write_text("types: [unclosed", encoding="utf-8")
    clock.now += 1.0
    assert source.get() is good
    health = source.health()
    assert health["status"] == "warn" and "cannot be read" in health["output"]
    _write(path, shipped)  # fixed: the next read after the TTL clears the warning
    clock.now += 1.0
    assert source.get().digest == good.digest
    assert source.health()["status"] == "pass"


def test_bad_override_stops_startup(tmp_path: Path, shipped: dict[str, Any]) -> None:
    path = tmp_path / "types.yaml"
    shipped["types"]["local_calcs"]["phase"] = "omega"
    _write(path, shipped)
    with pytest.raises(ConfigError, match=r"types\.yaml: types\.local_calcs\.phase"):
        RegistrySource(path, ttl=1.0)
