"""The formula catalogue alone: hand-computed values, vectorised == row by row, bounds."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bem.errors import ValidationFailed
from bem.services.sfde.formulas import CATALOGUE, evaluate, lookup

DOCS = Path(__file__).resolve().parents[3] / "docs" / "formulas.md"

# (formula, one row of parameters, expected outputs), each worked out by hand.
KNOWN: list[tuple[str, dict[str, float], dict[str, float]]] = [
    # w = 10 kN/m over 6 m: M = 10 * 36 / 8 = 45 kN m, V = 10 * 6 / 2 = 30 kN
    ("simple_beam_udl", {"w": 10, "L": 6}, {"max_moment": 45, "max_shear": 30}),
    # 5 * 10 N/mm * 6000^4 mm^4 / (384 * 200000 MPa * 1e8 mm^4) = 8.4375 mm
    ("simple_beam_udl_deflection", {"w": 10, "L": 6, "E": 200_000, "I": 1e8},
     {"deflection": 8.4375, "deflection_ratio": 8.4375 / 6000}),
    # pi^2 * 200000 * 1e7 / 3000^2 N = 2193.245 kN; fixed-fixed K = 0.5 quadruples it
    ("euler_buckling", {"E": 200_000, "I": 1e7, "L": 3},
     {"critical_load": math.pi**2 * 2e12 / 9e6 / 1000, "effective_length": 3}),
    ("euler_buckling", {"E": 200_000, "I": 1e7, "L": 3, "K": 0.5},
     {"critical_load": 4 * math.pi**2 * 2e12 / 9e6 / 1000, "effective_length": 1.5}),
    # 300 x 600 mm: A = 180000 mm2, I = 300 * 600^3 / 12 = 5.4e9 mm4, S = 300 * 600^2 / 6
    ("rectangular_section", {"b": 300, "h": 600},
     {"area": 180_000, "moment_of_inertia": 5.4e9, "section_modulus": 1.8e7,
      "radius_of_gyration": 600 / math.sqrt(12)}),
    # 45 kN m on S = 1.8e7 mm3: 45e6 / 1.8e7 = 2.5 MPa
    ("bending_stress", {"M": 45, "S": 1.8e7}, {"stress": 2.5}),
    # D=10 L=5 Lr=2 S=3 R=1 W=8: U1 14, U2 12+8+1.5, U3 12+4.8+max(5, 4), U4 12+8+5+1.5,
    # U5 9+8 -> U4 = 26.5 governs
    ("lrfd_combinations", {"D": 10, "L": 5, "Lr": 2, "S": 3, "R": 1, "W": 8},
     {"combo_1": 14, "combo_2": 21.5, "combo_3": 21.8, "combo_4": 26.5, "combo_5": 17,
      "governing": 26.5, "governing_combination": 4}),
    # dead load alone: 1.4D governs
    ("lrfd_combinations", {"D": 100}, {"governing": 140, "governing_combination": 1}),
    # 0.3 W/m2K * 200 m2 * 20 K = 1200 W; 1.2 * 1005 * 0.5 m3/s * 20 K = 12060 W
    ("hvac_load", {"U": 0.3, "A": 200, "dT": 20, "V": 0.5},
     {"conduction": 1200, "ventilation": 12060, "total": 13260, "total_kw": 13.26}),
    ("material_cost", {"quantity": 10, "unit_price": 50, "waste": 0.1},
     {"cost": 550, "waste_cost": 50}),
    ("labour_cost", {"hours": 40, "rate": 30, "overhead": 0.25},
     {"cost": 1500, "overhead_cost": 300}),
    # (4 + 4*6 + 14) / 6 = 7 days, (14 - 4) / 6 = 1.667
    ("pert_duration", {"optimistic": 4, "most_likely": 6, "pessimistic": 14},
     {"expected": 7, "std_dev": 10 / 6, "variance": (10 / 6) ** 2}),
    # 100 / 1.1 + 100 / 1.21 + 100 / 1.331 = 248.685; less 250
    ("npv_annuity", {"payment": 100, "rate": 0.1, "periods": 3, "initial_investment": 250},
     {"npv": 100 / 1.1 + 100 / 1.21 + 100 / 1.331 - 250,
      "present_value": 100 / 1.1 + 100 / 1.21 + 100 / 1.331}),
    ("npv_annuity", {"payment": 100, "rate": 0, "periods": 12}, {"npv": 1200}),
    # one period: I0 (1 + r) = C, so r = 150 / 100 - 1
    ("irr_annuity", {"initial_investment": 100, "payment": 150, "periods": 1},
     {"irr": 0.5, "irr_percent": 50}),
    ("roi", {"final_value": 120, "cost": 100}, {"roi": 0.2, "roi_percent": 20, "net_gain": 20}),
    # steel 7850 kg/m3, 355 MPa: 355 / 7.85 = 45.22 kN m/kg; 0.74 * (1 - exp(-45.22 / 25))
    ("manufacturing_score", {"density": 7850, "material_strength": 355, "buildability": 0.74},
     {"specific_strength": 355 / 7.85, "score": 0.74 * (1 - math.exp(-355 / 7.85 / 25))}),
    ("prism_geometry", {"length": 2, "width": 3, "height": 4, "density": 2400},
     {"volume": 24, "surface": 52, "mass": 57_600, "surface_to_volume": 52 / 24}),
    # coverage 900 / 1000 = 0.9 over a limit of 0.6, height 30 m over 20 m: (0.6/0.9) (20/30)
    ("site_fit", {"footprint_area": 900, "site_area": 1000, "height": 30, "height_limit": 20,
                  "max_coverage": 0.6},
     {"coverage": 0.9, "height_ratio": 1.5, "fit": 4 / 9, "fits": 0}),
    ("site_fit", {"footprint_area": 0, "site_area": 1000, "height": 0, "height_limit": 20,
                  "max_coverage": 0.6}, {"coverage": 0, "fit": 1, "fits": 1}),
]


def one_row(name: str, params: dict[str, float]) -> dict[str, float]:
    out = evaluate(name, {k: [v] for k, v in params.items()})
    return {k: float(v[0]) for k, v in out.items()}


@pytest.mark.parametrize(("name", "params", "expected"), KNOWN,
                         ids=[f"{k[0]}-{i}" for i, k in enumerate(KNOWN)])
def test_known_values(name: str, params: dict[str, float], expected: dict[str, float]) -> None:
    got = one_row(name, params)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def discounted(rate: float, investment: float, payment: float, periods: int) -> float:
    """NPV by summing the discounted cash flows one by one (independent of the formula)."""
    return -investment + sum(payment / (1 + rate) ** k for k in range(1, periods + 1))


@pytest.mark.parametrize(("investment", "payment", "periods"), [
    (250, 100, 3),  # IRR of -250, 100, 100, 100 = 9.70 %
    (1000, 1, 1200),  # barely recovered over 100 years of months: a tiny positive rate
    (1000, 0.5, 1200),  # never recovered: negative rate
    (1e6, 1e5, 30),
    (100, 1, 2),  # about -86 %: far down the exponential side
    (1, 9, 1),  # +800 %
])
def test_irr_zeroes_the_npv(investment: float, payment: float, periods: int) -> None:
    irr = one_row("irr_annuity", {"initial_investment": investment, "payment": payment,
                                  "periods": periods})["irr"]
    assert abs(discounted(irr, investment, payment, periods)) < 1e-7 * investment
    if (investment, payment, periods) == (250, 100, 3):
        assert irr == pytest.approx(0.0970102574, abs=1e-10)


@pytest.mark.parametrize(("payment", "needle"), [
    (0.0, "never recovered"),
    (1e-5, "below -99%"),  # 1e-5 (100 + 100^2 + 100^3) = 10.1 < 100 even at -99 %
    (1e9, "above 1000%"),
])
def test_irr_outside_the_range_is_a_clear_422(payment: float, needle: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        evaluate("irr_annuity", {"initial_investment": [100.0, 100.0],
                                 "payment": [50.0, payment], "periods": [3, 3]})
    assert err.value.field == "columns.payment[1]"
    assert needle in err.value.message


def sample_columns(name: str, rows: int, seed: int) -> dict[str, np.ndarray]:
    """Random values within each parameter's bounds: half over the whole range, half near
    the minimum (where most real inputs are); whole numbers where the formula wants them."""
    rng = np.random.default_rng(seed)
    columns = {}
    for p in CATALOGUE[name].parameters:
        span = p.max - p.min
        wide = rng.uniform(p.min, p.max, rows // 2)
        near = p.min + span * rng.uniform(0, 1e-3, rows - rows // 2)
        values = np.concatenate([wide, near])
        columns[p.name] = np.round(values) if p.name == "periods" else values
    return columns


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_vectorised_equals_row_by_row(name: str) -> None:
    columns = sample_columns(name, 300, seed=len(name))
    valid: list[int] = []
    rows: list[dict[str, float]] = []
    for i in range(300):
        try:
            rows.append(one_row(name, {k: float(v[i]) for k, v in columns.items()}))
        except ValidationFailed:
            continue  # inconsistent random row (e.g. PERT o > m); checked elsewhere
        valid.append(i)
    assert len(valid) >= 20, f"{name}: too few valid random rows to compare"
    together = evaluate(name, {k: v[valid] for k, v in columns.items()})
    for j, row in enumerate(rows):
        for key, value in row.items():
            assert together[key][j] == pytest.approx(value, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_bound_is_enforced_and_named(name: str) -> None:
    formula = CATALOGUE[name]
    base = {p.name: [p.min, p.min] for p in formula.parameters}
    for p in formula.parameters:
        for bad, word in ((p.min - abs(p.min) - 1, "below the minimum"),
                          (p.max + abs(p.max) + 1, "above the maximum"),
                          (float("nan"), "not a finite number")):
            columns = {**base, p.name: [p.min, bad]}
            with pytest.raises(ValidationFailed) as err:
                formula.evaluate(columns)
            assert err.value.field == f"columns.{p.name}[1]", err.value.message
            assert word in err.value.message
        with pytest.raises(ValidationFailed) as err:
            formula.evaluate({**base, p.name: [p.min, 2e308]}, prefix="params", indexed=False)
        assert err.value.field == f"params.{p.name}"


def test_missing_unknown_and_ragged_parameters() -> None:
    with pytest.raises(ValidationFailed) as err:
        evaluate("simple_beam_udl", {"w": [1.0], "span": [2.0]})
    fields = [d["field"] for d in err.value.details]
    assert fields == ["columns.span", "columns.L"]
    assert "unknown parameter" in err.value.message and "required" in err.value.message
    with pytest.raises(ValidationFailed, match=r"columns.w: has 1 values"):
        evaluate("simple_beam_udl", {"w": [1.0], "L": [2.0, 3.0]})
    with pytest.raises(ValidationFailed, match="at least one value"):
        evaluate("simple_beam_udl", {"w": [], "L": []})
    with pytest.raises(ValidationFailed, match="unknown formula 'beam'") as err:
        lookup("beam")
    assert err.value.field == "formula" and "simple_beam_udl" in err.value.message


def test_consistency_checks_name_the_row() -> None:
    with pytest.raises(ValidationFailed) as err:
        evaluate("pert_duration", {"optimistic": [1, 5, 5], "most_likely": [2, 4, 3],
                                   "pessimistic": [3, 6, 2]})
    assert err.value.field == "columns.most_likely[1]"
    assert "(2 rows affected)" in err.value.message
    with pytest.raises(ValidationFailed, match=r"columns.periods\[0\]: 2.5 is not a whole"):
        evaluate("npv_annuity", {"payment": [1.0], "rate": [0.1], "periods": [2.5]})


def test_overflow_is_a_422_not_inf() -> None:
    with pytest.raises(ValidationFailed, match="npv is not finite") as err:
        evaluate("npv_annuity", {"payment": [1.0, 1.0], "rate": [0.1, -0.9],
                                 "periods": [10, 1200]})
    assert err.value.field == "columns[1]"


def test_catalogue_is_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `(\w+)`", docs, flags=re.MULTILINE))
    assert headings == set(CATALOGUE), "docs/formulas.md must have one section per formula"
    for f in CATALOGUE.values():
        info: dict[str, Any] = f.info()
        assert info["title"] and info["description"] and info["reference"]
        assert f.domain in {"structural", "energy", "cost", "time", "finance", "fabrication",
                            "site"}
        names = [p["name"] for p in info["parameters"]]
        assert len(set(names)) == len(names)
        for p in f.parameters:
            assert p.unit and p.description and p.min < p.max
            assert p.default is None or p.min <= p.default <= p.max
        assert all(o.unit and o.description for o in f.outputs)
