"""Project-defined indices behind the alpha-phase functors of dag_alpha.

These are BEM's own definitions, not external standards: simple, monotone, bounded scores
(0..1) whose inputs have physical units, so that they can be explained and recomputed by hand.
"""

from __future__ import annotations

import numpy as np

from bem.services.sfde.engine import Array, Formula, Output, Parameter

PROJECT_DEFINED = "Project-defined index (BEM platform), not an external standard"
_DENSITY = Parameter("density", "kg/m^3", "density of the component's material (concrete "
                                          "~2400, steel 7850, timber ~480)", 1.0, 25000.0)


def manufacturing_score(density: Array, material_strength: Array, buildability: Array,
                        s_ref: Array) -> dict[str, Array]:
    specific = material_strength / (density / 1000.0)  # MPa / (t/m^3) = kN m/kg
    return {"specific_strength": specific,
            "score": buildability * -np.expm1(-specific / s_ref)}


def prism_geometry(length: Array, width: Array, height: Array, density: Array
                   ) -> dict[str, Array]:
    volume = length * width * height
    surface = 2.0 * (length * width + length * height + width * height)
    return {"volume": volume, "surface": surface, "mass": density * volume,
            "surface_to_volume": surface / volume}


def site_fit(footprint_area: Array, site_area: Array, height: Array, height_limit: Array,
             max_coverage: Array) -> dict[str, Array]:
    coverage = footprint_area / site_area
    # min(1, c_max / c) written without a division by a zero coverage or height
    fit = (max_coverage / np.maximum(coverage, max_coverage)
           * height_limit / np.maximum(height, height_limit))
    return {"coverage": coverage, "height_ratio": height / height_limit, "fit": fit,
            "fits": (fit == 1.0).astype(np.float64)}


_LENGTH = (1e-3, 1000.0)  # m

FORMULAS = (
    Formula(
        name="manufacturing_score", title="Manufacturing score (evaluate_manufacturing)",
        domain="fabrication",
        description="Specific strength s = material_strength / (density / 1000) in kN m/kg "
                    "(strength per unit mass), and score = buildability x (1 - exp(-s / "
                    "s_ref)): 0 for a weak or unbuildable component, approaching the "
                    "buildability score as specific strength grows past s_ref. With the "
                    "default s_ref = 25 kN m/kg: C32 concrete (2400 kg/m^3, 32 MPa) gives "
                    "1 - exp(-0.533) = 0.41 before buildability, S355 steel 0.84, "
                    "GL24 timber 0.86.",
        reference=PROJECT_DEFINED,
        parameters=(
            _DENSITY,
            Parameter("material_strength", "MPa", "characteristic strength of the material",
                      0.01, 10000.0),
            Parameter("buildability", "1", "buildability score of the component, 0..1", 0.0,
                      1.0),
            Parameter("s_ref", "kN m/kg", "reference specific strength (scale of the "
                                          "saturation)", 0.1, 1000.0, 25.0)),
        outputs=(Output("specific_strength", "kN m/kg", "material_strength / (density / 1000)"),
                 Output("score", "1", "buildability x (1 - exp(-specific_strength / s_ref))")),
        fn=manufacturing_score),
    Formula(
        name="prism_geometry", title="Prismatic component geometry (convert_to_geometry)",
        domain="fabrication",
        description="A component idealised as a rectangular prism l x w x h: volume V = l w "
                    "h, surface area 2 (l w + l h + w h), mass = density x V, and the "
                    "surface-to-volume ratio (formwork, finishes and heat loss per volume).",
        reference=f"{PROJECT_DEFINED} (elementary solid geometry)",
        parameters=(Parameter("length", "m", "length l", *_LENGTH),
                    Parameter("width", "m", "width w", *_LENGTH),
                    Parameter("height", "m", "height h", *_LENGTH),
                    _DENSITY),
        outputs=(Output("volume", "m^3", "l w h"),
                 Output("surface", "m^2", "2 (l w + l h + w h)"),
                 Output("mass", "kg", "density x volume"),
                 Output("surface_to_volume", "1/m", "surface / volume")),
        fn=prism_geometry),
    Formula(
        name="site_fit", title="Site fit (evaluate_site_fit)", domain="site",
        description="How well a component fits its plot: coverage c = footprint / site area, "
                    "height ratio = height / height limit, and fit = min(1, c_max / c) x "
                    "min(1, height_limit / height): 1 when within both the coverage limit "
                    "and the height limit, falling in proportion to the worst excess. "
                    "fits = 1 when fit = 1, else 0.",
        reference=PROJECT_DEFINED,
        parameters=(
            Parameter("footprint_area", "m^2", "area the component occupies on the plot",
                      0.0, 1.0e7),
            Parameter("site_area", "m^2", "plot area", 1.0, 1.0e8),
            Parameter("height", "m", "component height above ground", 0.0, 1000.0),
            Parameter("height_limit", "m", "permitted height", 0.1, 1000.0),
            Parameter("max_coverage", "1", "permitted plot coverage ratio c_max", 0.01, 1.0)),
        outputs=(Output("coverage", "1", "footprint_area / site_area"),
                 Output("height_ratio", "1", "height / height_limit"),
                 Output("fit", "1", "min(1, c_max / c) x min(1, height_limit / height)"),
                 Output("fits", "1", "1 when fit = 1, else 0")),
        fn=site_fit),
)
