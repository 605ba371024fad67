"""Structural formulas: load combinations, beams, columns, sections, stresses.

Units (engineering SI, the ones on drawings and in code tables): spans and member lengths in
m, section dimensions in mm, loads in kN and kN/m, moments in kN m, moduli and stresses in
MPa (N/mm2), section properties in mm2 / mm3 / mm4, deflections in mm.
"""

from __future__ import annotations

import numpy as np

from bem.services.sfde.engine import Array, Formula, Output, Parameter

MAX_LOAD = 1e7  # kN (or kN/m, kPa): far above any building load; keeps sums finite
MAX_SPAN = 200.0  # m
MIN_MODULUS, MAX_MODULUS = 100.0, 1.0e6  # MPa: soft polymers .. beyond diamond
MAX_INERTIA = 1.0e15  # mm4 (a 5 m deep plate girder is ~1e13)


def lrfd_combinations(D: Array, L: Array, Lr: Array, S: Array, R: Array, W: Array
                      ) -> dict[str, Array]:
    roof = np.maximum(np.maximum(Lr, S), R)  # "Lr or S or R": the largest governs
    combos = np.stack([
        1.4 * D,
        1.2 * D + 1.6 * L + 0.5 * roof,
        1.2 * D + 1.6 * roof + np.maximum(L, 0.5 * W),
        1.2 * D + 1.0 * W + L + 0.5 * roof,
        0.9 * D + 1.0 * W,
    ])
    out = {f"combo_{i + 1}": combos[i] for i in range(5)}
    out["governing"] = combos.max(axis=0)
    out["governing_combination"] = combos.argmax(axis=0) + 1.0  # first of equal maxima
    return out


def simple_beam_udl(w: Array, L: Array) -> dict[str, Array]:
    return {"max_moment": w * L**2 / 8.0, "max_shear": w * L / 2.0}


def simple_beam_udl_deflection(w: Array, L: Array, E: Array, I: Array  # noqa: E741
                               ) -> dict[str, Array]:
    span = L * 1000.0  # mm; w in kN/m is N/mm
    deflection = 5.0 * w * span**4 / (384.0 * E * I)
    return {"deflection": deflection, "deflection_ratio": deflection / span}


def euler_buckling(E: Array, I: Array, L: Array, K: Array) -> dict[str, Array]:  # noqa: E741
    effective = K * L
    load_n = np.pi**2 * E * I / (effective * 1000.0) ** 2  # N with E MPa, I mm4, KL mm
    return {"critical_load": load_n / 1000.0, "effective_length": effective}


def rectangular_section(b: Array, h: Array) -> dict[str, Array]:
    return {"area": b * h, "moment_of_inertia": b * h**3 / 12.0,
            "section_modulus": b * h**2 / 6.0, "radius_of_gyration": h / np.sqrt(12.0)}


def bending_stress(M: Array, S: Array) -> dict[str, Array]:
    return {"stress": M * 1.0e6 / S}  # kN m -> N mm


def _load(name: str, what: str, default: float | None = 0.0) -> Parameter:
    return Parameter(name, "kN", f"{what} load effect (any one consistent unit: kN, kN/m, "
                                 f"kPa; the combinations are linear)", 0.0, MAX_LOAD, default)


_SPAN = Parameter("L", "m", "span between the supports", 0.1, MAX_SPAN)
_UDL = Parameter("w", "kN/m", "uniformly distributed load over the whole span", 0.0, 1.0e4)
_E = Parameter("E", "MPa", "modulus of elasticity (steel 200000, concrete ~30000, "
                           "timber ~11000)", MIN_MODULUS, MAX_MODULUS)
_I = Parameter("I", "mm^4", "second moment of area about the bending axis", 1.0, MAX_INERTIA)

FORMULAS = (
    Formula(
        name="lrfd_combinations", title="LRFD basic load combinations", domain="structural",
        description=(
            "Factored load of each strength-design combination and the governing (largest) "
            "one. U1 = 1.4D; U2 = 1.2D + 1.6L + 0.5(Lr or S or R); "
            "U3 = 1.2D + 1.6(Lr or S or R) + (L or 0.5W); U4 = 1.2D + 1.0W + L + "
            "0.5(Lr or S or R); U5 = 0.9D + 1.0W. 'Lr or S or R' takes the largest of the "
            "three and 'L or 0.5W' the larger, so each combination is its worst case for "
            "loads acting in the same direction. The factor on L in U3/U4 is 1.0 (the "
            "standard's exception 1 allowing 0.5 is not applied: conservative). U5 governs "
            "uplift and overturning (counteracting effects), not the maximum."),
        reference="ASCE/SEI 7-16, Minimum Design Loads and Associated Criteria for Buildings "
                  "and Other Structures, section 2.3.1 (basic combinations for strength "
                  "design); seismic combinations (2.3.6) are not included",
        parameters=(_load("D", "dead", None), _load("L", "live"), _load("Lr", "roof live"),
                    _load("S", "snow"), _load("R", "rain"), _load("W", "wind")),
        outputs=(*(Output(f"combo_{i}", "kN", f"factored load U{i}") for i in range(1, 6)),
                 Output("governing", "kN", "largest factored load max(U1..U5)"),
                 Output("governing_combination", "1",
                        "number (1-5) of the governing combination")),
        fn=lrfd_combinations),
    Formula(
        name="simple_beam_udl", title="Simply supported beam, uniform load: moment and shear",
        domain="structural",
        description="Maximum bending moment at midspan M = w L^2 / 8 and maximum shear "
                    "(equal to each support reaction) V = w L / 2.",
        reference="AISC Steel Construction Manual, 15th ed., Table 3-23 case 1 (simple "
                  "beam, uniformly distributed load)",
        parameters=(_UDL, _SPAN),
        outputs=(Output("max_moment", "kN m", "w L^2 / 8, at midspan"),
                 Output("max_shear", "kN", "w L / 2, at the supports")),
        fn=simple_beam_udl),
    Formula(
        name="simple_beam_udl_deflection",
        title="Simply supported beam, uniform load: midspan deflection", domain="structural",
        description="Elastic midspan deflection delta = 5 w L^4 / (384 E I), and delta / L "
                    "to compare with serviceability limits such as L/360 (0.00278).",
        reference="AISC Steel Construction Manual, 15th ed., Table 3-23 case 1",
        parameters=(_UDL, _SPAN, _E, _I),
        outputs=(Output("deflection", "mm", "5 w L^4 / (384 E I)"),
                 Output("deflection_ratio", "1", "deflection / span")),
        fn=simple_beam_udl_deflection),
    Formula(
        name="euler_buckling", title="Euler critical buckling load", domain="structural",
        description="Elastic critical load of an ideal pin-ended (K=1) or otherwise "
                    "restrained column P_cr = pi^2 E I / (K L)^2. Valid for slender columns "
                    "(stress at P_cr below the proportional limit).",
        reference="Timoshenko & Gere, Theory of Elastic Stability, 2nd ed., ch. 2; "
                  "effective length factors K per AISC 360-16 Commentary Table C-A-7.1",
        parameters=(_E, _I, Parameter("L", "m", "unbraced length", 0.1, MAX_SPAN),
                    Parameter("K", "1", "effective length factor (0.5 fixed-fixed, 1.0 "
                                        "pinned, 2.0 cantilever)", 0.5, 2.1, 1.0)),
        outputs=(Output("critical_load", "kN", "pi^2 E I / (K L)^2"),
                 Output("effective_length", "m", "K L")),
        fn=euler_buckling),
    Formula(
        name="rectangular_section", title="Rectangular section properties", domain="structural",
        description="Solid rectangle b x h bending about the axis parallel to b: area A = b h, "
                    "second moment I = b h^3 / 12, elastic section modulus S = b h^2 / 6, "
                    "radius of gyration r = h / sqrt(12).",
        reference="Properties of plane areas, e.g. Gere & Goodno, Mechanics of Materials, "
                  "appendix on properties of plane areas",
        parameters=(Parameter("b", "mm", "width (parallel to the bending axis)", 1.0, 1.0e5),
                    Parameter("h", "mm", "depth (perpendicular to the bending axis)", 1.0,
                              1.0e5)),
        outputs=(Output("area", "mm^2", "b h"),
                 Output("moment_of_inertia", "mm^4", "b h^3 / 12"),
                 Output("section_modulus", "mm^3", "b h^2 / 6"),
                 Output("radius_of_gyration", "mm", "h / sqrt(12)")),
        fn=rectangular_section),
    Formula(
        name="bending_stress", title="Extreme-fibre bending stress", domain="structural",
        description="Flexure formula sigma = M / S (linear elastic, plane sections remain "
                    "plane); the sign follows the moment.",
        reference="Euler-Bernoulli beam theory, e.g. Gere & Goodno, Mechanics of Materials, "
                  "ch. 5 (flexure formula)",
        parameters=(Parameter("M", "kN m", "bending moment", -1.0e7, 1.0e7),
                    Parameter("S", "mm^3", "elastic section modulus", 1.0, 1.0e15)),
        outputs=(Output("stress", "MPa", "M / S"),),
        fn=bending_stress),
)
