"""The formula catalogue: every named formula of sfde, pure Python/NumPy.

Other services and pool workers may import this module directly:

    from bem.services.sfde.formulas import CATALOGUE
    out = CATALOGUE["simple_beam_udl"].evaluate({"w": [10.0], "L": [6.0]})
    out["max_moment"]  # array([45.])

Each `Formula` carries its documentation (what, equation, units, source: served by
`GET /formulas` and written up in docs/formulas.md) and one vectorised function (also
importable by name below, e.g. `simple_beam_udl(w, L)`, for callers that validate
themselves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bem.errors import ValidationFailed
from bem.services.sfde import building, finance, project, structural
from bem.services.sfde.building import hvac_load, labour_cost, material_cost, pert_duration
from bem.services.sfde.engine import Array, Formula, Output, Parameter
from bem.services.sfde.finance import irr_annuity, npv_annuity, roi
from bem.services.sfde.project import manufacturing_score, prism_geometry, site_fit
from bem.services.sfde.structural import (
    bending_stress,
    euler_buckling,
    lrfd_combinations,
    rectangular_section,
    simple_beam_udl,
    simple_beam_udl_deflection,
)

CATALOGUE: dict[str, Formula] = {
    f.name: f
    for f in sorted((*structural.FORMULAS, *building.FORMULAS, *finance.FORMULAS,
                     *project.FORMULAS), key=lambda f: f.name)
}


def lookup(name: str, field: str = "formula") -> Formula:
    """The formula called `name`; a 422 naming `field` and listing the known ones if none."""
    formula = CATALOGUE.get(name)
    if formula is None:
        raise ValidationFailed(f"{field}: unknown formula {name!r}; known formulas: "
                               f"{', '.join(CATALOGUE)}", field=field)
    return formula


def evaluate(name: str, columns: Mapping[str, Sequence[float] | Array]) -> dict[str, Array]:
    """Evaluate formula `name` over equal-length columns (see Formula.evaluate)."""
    return lookup(name).evaluate(columns)


__all__ = [
    "CATALOGUE", "Formula", "Output", "Parameter", "bending_stress", "euler_buckling",
    "evaluate", "hvac_load", "irr_annuity", "labour_cost", "lookup", "lrfd_combinations",
    "manufacturing_score", "material_cost", "npv_annuity", "pert_duration", "prism_geometry",
    "rectangular_section", "roi", "simple_beam_udl", "simple_beam_udl_deflection", "site_fit",
]
