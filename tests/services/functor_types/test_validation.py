"""Validation of components against their functor type: exact paths, stable suggestions."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from bem.data import sample_project
from bem.services.functor_types.registry import read_config
from bem.services.functor_types.validation import validate_components

CONFIG = read_config(None)[1]


def check(*components: dict[str, Any]) -> list[dict[str, Any]]:
    return validate_components(CONFIG, list(components))


def node(i: int) -> dict[str, Any]:
    """Sample node V0i (1-based), a valid component of its type."""
    return copy.deepcopy(sample_project()["nodes"][i - 1])


def apply(component: dict[str, Any], suggestions: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client does with the suggestions: set, replace, clamp or remove at each path."""
    fixed = copy.deepcopy(component)
    for s in suggestions:
        *parents, last = s["path"].split(".")[1:]  # drop "components[i]"
        target = fixed
        for key in parents:
            target = target[key]
        if s["action"] == "remove":
            del target[last]
        else:
            target[last] = s["value"]
    return fixed


def test_every_sample_node_is_valid() -> None:
    reports = validate_components(CONFIG, sample_project()["nodes"])
    assert [r["valid"] for r in reports] == [True] * 10
    assert [r["functor_type"] for r in reports] == ["stateless_spatial"] * 3 + [
        "local_calcs"] * 3 + ["aggregator"] * 4


def _with(i: int, path: str, value: Any) -> dict[str, Any]:
    c = node(i)
    *parents, last = path.split(".")
    target = c
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return c


DELETE = object()

# (component, path of the one error, keyword, suggested action, suggested value)
CASES = [
    (_with(1, "attrs.material_strength", -3), "attrs.material_strength", "minimum", "clamp", 0.1),
    (_with(2, "attrs.component_density", 30000.0), "attrs.component_density", "maximum", "clamp",
     25000),
    (_with(3, "attrs.buildability_score", DELETE), "attrs.buildability_score", "required", "set",
     0.5),
    (_with(4, "attrs.compliance_pass", DELETE), "attrs.compliance_pass", "required", "set",
     False),
    (_with(5, "attrs.compliance_pass", "true"), "attrs.compliance_pass", "type", "set", True),
    (_with(7, "attrs.occupancy_rate", "0.9"), "attrs.occupancy_rate", "type", "set", 0.9),
    (_with(8, "attrs.roi_estimate", [1]), "attrs.roi_estimate", "type", "set", 0),
    (_with(9, "functor", "generate_bids"), "functor", "enum", "replace", "generate_bid"),
    (_with(1, "functor", "convert_geometry"), "functor", "enum", "replace",
     "convert_to_geometry"),
    (_with(10, "callback", "dag"), "callback", "const", "replace", "combinatorial"),
    (_with(10, "phase", "delta"), "phase", "const", "replace", "gamma"),
    (_with(6, "colour", "red"), "colour", "additionalProperties", "remove", None),
    (_with(2, "agent", -1), "agent", "minimum", "clamp", 0),
    (_with(6, "functor_type", "stateless_spatial"), "functor_type", "functor_type", "replace",
     "local_calcs"),
    (_with(7, "functor_type", "aggregatr"), "functor_type", "functor_type", "replace",
     "aggregator"),
    (_with(3, "functor", DELETE), "functor", "required", "set", "evaluate_manufacturing"),
]


@pytest.mark.parametrize(("component", "path", "keyword", "action", "value"), CASES)
def test_error_path_and_suggestion(component: dict[str, Any], path: str, keyword: str,
                                   action: str, value: Any) -> None:
    valid, bad = check(node(1), component)  # index 1: the path says components[1]
    assert valid["valid"] and not bad["valid"]
    assert f"components[1].{path}" in [e["path"] for e in bad["errors"]]
    assert {e["keyword"] for e in bad["errors"] if e["path"] == f"components[1].{path}"} >= {
        keyword}
    suggestion = next(s for s in bad["suggestions"] if s["path"] == f"components[1].{path}")
    assert (suggestion["action"], suggestion["value"]) == (action, value)


def test_every_error_is_reported_with_its_own_path() -> None:
    c = node(1)
    c["attrs"] = {"component_density": "heavy", "material_strength": 1e9}
    c["agent"] = "one"
    [report] = check(c)
    assert [(e["path"], e["keyword"]) for e in report["errors"]] == [
        ("components[0].agent", "type"),
        ("components[0].attrs.buildability_score", "required"),
        ("components[0].attrs.component_density", "type"),
        ("components[0].attrs.material_strength", "maximum"),
    ]


def test_suggestions_are_deterministic_and_repair_the_component() -> None:
    c = node(2)
    c["functor"] = "evaluate_manufactoring"
    c["attrs"] = {"component_density": 0, "material_strength": "355", "junk": {"a": 1}}
    c["extra"] = True
    first = check(c)[0]
    rng = random.Random(7)
    for _ in range(5):  # same content, other key orders: same answer
        shuffled = dict(rng.sample(list(c.items()), len(c)))
        shuffled["attrs"] = dict(rng.sample(list(c["attrs"].items()), len(c["attrs"])))
        assert check(shuffled)[0] == first
    repaired = apply(c, first["suggestions"])
    assert repaired["functor"] == "evaluate_manufacturing"
    assert repaired["attrs"]["material_strength"] == 355.0
    remaining = check(repaired)[0]
    # `junk` (an object) has no fix the type can suggest; everything else was repaired
    assert [e["path"] for e in remaining["errors"]] == ["components[0].attrs.junk"]


def test_a_wrong_type_is_fixed_first_then_its_attributes() -> None:
    c = node(1)
    c["phase"], c["callback"], c["functor"] = "gamma", "combinatorial", "generate_bid"
    [report] = check(c)
    assert report["functor_type"] is None
    assert [e["path"] for e in report["errors"]] == ["components[0].functor_type"]
    retyped = apply(c, report["suggestions"])
    assert retyped["functor_type"] == "aggregator"
    second = check(retyped)[0]
    assert {s["path"] for s in second["suggestions"]} == {
        "components[0].attrs.bid_match_score", "components[0].attrs.occupancy_rate",
        "components[0].attrs.roi_estimate"}
    assert [e["path"] for e in second["errors"] if e["keyword"] != "required"] == []
    assert check(apply(retyped, second["suggestions"]))[0]["valid"]


def test_type_is_inferred_from_phase_or_functor() -> None:
    c = node(5)
    del c["functor_type"]
    assert check(c)[0]["functor_type"] == "local_calcs"
    del c["phase"]
    assert check(c)[0]["functor_type"] == "local_calcs"  # from the functor
    c["functor"] = "check_complience"
    [report] = check(c)
    assert report["functor_type"] is None
    assert report["errors"][0]["path"] == "components[0].functor_type"
    assert report["suggestions"][0]["value"] == "local_calcs"


def test_a_component_that_is_not_an_object() -> None:
    [report] = validate_components(CONFIG, [42])
    assert report["valid"] is False and report["errors"][0]["path"] == "components[0]"
