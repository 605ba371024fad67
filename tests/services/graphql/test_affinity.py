"""The affinity plans on their own: which formulas run, with which parameters, and why not."""

from __future__ import annotations

import pytest

from bem.services.graphql import affinity

CATALOGUE = {"lrfd_combinations": {"D": None, "L": 0.0, "Lr": 0.0, "S": 0.0, "R": 0.0,
                                   "W": 0.0},
             "simple_beam_udl": {"w": None, "L": None}}


def test_request_names_win_over_attributes_and_units_convert() -> None:
    plan = affinity.plan("structural", {"volume_cm3": 2e6, "density": 500.0, "L": 3.0},
                         {"component_density": 2400.0, "length_m": 4.0}, CATALOGUE)
    (lrfd, lrfd_params), (beam, beam_params) = plan.evaluations
    dead = 500.0 * 2.0 * affinity.G / 1000  # the request's density, 2e6 cm3 = 2 m3
    assert (lrfd, beam) == ("lrfd_combinations", "simple_beam_udl")
    assert lrfd_params == pytest.approx({"D": dead, "L": 3.0})  # L: lrfd's own live load
    assert beam_params == pytest.approx({"w": dead / 4.0, "L": 4.0})  # L: the span quantity
    assert affinity.status_of(plan) == "completed"


def test_what_is_missing_is_named() -> None:
    plan = affinity.plan("structural", {"length_mm": 0.0}, {"component_density": 2400.0,
                                                            "volume_m3": 1.0}, CATALOGUE)
    assert [f for f, _ in plan.evaluations] == ["lrfd_combinations"]
    assert plan.missing == {"simple_beam_udl": [
        "self_weight_per_length (undefined for the values given, e.g. a zero length)"]}
    assert affinity.status_of(plan) == "partial"
    assert affinity.status_of(affinity.plan("structural", {}, {}, CATALOGUE)) == \
        "missing_parameters"


@pytest.mark.parametrize(("parameters", "name"), [
    ({"x": True}, "x"), ({"x": "1"}, "x"), ({"x": float("inf")}, "x"), ([1], ""), ("a", "")])
def test_parameters_must_be_numbers(parameters: object, name: str) -> None:
    with pytest.raises(affinity.BadParameter) as caught:
        affinity.numbers(parameters)
    assert caught.value.name == name
