"""Building services, cost and schedule formulas: HVAC load, material and labour cost, PERT."""

from __future__ import annotations

from bem.services.sfde.engine import Array, Columns, Formula, Output, Parameter, Problem


def hvac_load(U: Array, A: Array, dT: Array, V: Array, rho: Array, cp: Array
              ) -> dict[str, Array]:
    conduction = U * A * dT
    ventilation = rho * cp * V * dT
    total = conduction + ventilation
    return {"conduction": conduction, "ventilation": ventilation, "total": total,
            "total_kw": total / 1000.0}


def material_cost(quantity: Array, unit_price: Array, waste: Array) -> dict[str, Array]:
    net = quantity * unit_price
    return {"cost": net * (1.0 + waste), "waste_cost": net * waste}


def labour_cost(hours: Array, rate: Array, overhead: Array) -> dict[str, Array]:
    direct = hours * rate
    return {"cost": direct * (1.0 + overhead), "overhead_cost": direct * overhead}


def pert_duration(optimistic: Array, most_likely: Array, pessimistic: Array
                  ) -> dict[str, Array]:
    std = (pessimistic - optimistic) / 6.0
    return {"expected": (optimistic + 4.0 * most_likely + pessimistic) / 6.0,
            "std_dev": std, "variance": std**2}


def _ordered_estimates(columns: Columns) -> list[Problem]:
    o, m, p = columns["optimistic"], columns["most_likely"], columns["pessimistic"]
    return [("most_likely", m < o, "less than optimistic (need o <= m <= p)"),
            ("pessimistic", p < m, "less than most_likely (need o <= m <= p)")]


FORMULAS = (
    Formula(
        name="hvac_load", title="HVAC sensible load: envelope conduction plus ventilation",
        domain="energy",
        description="Steady-state sensible heat flow through an envelope element, "
                    "Q_cond = U A dT, plus the sensible load of outdoor air brought in, "
                    "Q_vent = rho cp V dT. dT = indoor - outdoor temperature: positive is a "
                    "heating load (heat lost), negative a cooling load (heat gained).",
        reference="ASHRAE Handbook - Fundamentals (SI), ch. 18 Nonresidential Cooling and "
                  "Heating Load Calculations (conduction through envelope; sensible "
                  "ventilation and infiltration load q = rho cp Q dt)",
        parameters=(
            Parameter("U", "W/(m^2 K)", "thermal transmittance of the envelope element",
                      0.0, 10.0),
            Parameter("A", "m^2", "area of the envelope element", 0.0, 1.0e6),
            Parameter("dT", "K", "indoor minus outdoor design temperature", -100.0, 100.0),
            Parameter("V", "m^3/s", "outdoor air (ventilation + infiltration) flow rate",
                      0.0, 1.0e4, 0.0),
            Parameter("rho", "kg/m^3", "air density (1.2 at 20 C, sea level)", 0.5, 1.5, 1.2),
            Parameter("cp", "J/(kg K)", "specific heat of air at constant pressure", 900.0,
                      1100.0, 1005.0)),
        outputs=(Output("conduction", "W", "U A dT"),
                 Output("ventilation", "W", "rho cp V dT"),
                 Output("total", "W", "conduction + ventilation"),
                 Output("total_kw", "kW", "total / 1000")),
        fn=hvac_load),
    Formula(
        name="material_cost", title="Material cost with waste allowance", domain="cost",
        description="cost = quantity x unit_price x (1 + waste); waste is the fraction "
                    "ordered beyond the net quantity (offcuts, breakage).",
        reference="Quantity take-off costing practice (e.g. RSMeans Building Construction "
                  "Cost Data: material cost = quantity x unit cost, plus waste allowance)",
        parameters=(
            Parameter("quantity", "unit", "net quantity (m^3, m^2, t, pieces...)", 0.0, 1.0e9),
            Parameter("unit_price", "currency/unit", "price per unit of quantity", 0.0, 1.0e9),
            Parameter("waste", "1", "waste allowance as a fraction (0.05 = 5 %)", 0.0, 1.0,
                      0.0)),
        outputs=(Output("cost", "currency", "quantity x unit_price x (1 + waste)"),
                 Output("waste_cost", "currency", "quantity x unit_price x waste")),
        fn=material_cost),
    Formula(
        name="labour_cost", title="Labour cost with overhead", domain="cost",
        description="cost = hours x rate x (1 + overhead); overhead is the markup for "
                    "supervision, insurance and site costs as a fraction of direct labour.",
        reference="Construction estimating practice (e.g. RSMeans: labour cost = labour "
                  "hours x rate, with overhead and profit markup)",
        parameters=(
            Parameter("hours", "h", "labour hours", 0.0, 1.0e8),
            Parameter("rate", "currency/h", "hourly wage rate", 0.0, 1.0e4),
            Parameter("overhead", "1", "overhead markup as a fraction (0.25 = 25 %)", 0.0, 5.0,
                      0.0)),
        outputs=(Output("cost", "currency", "hours x rate x (1 + overhead)"),
                 Output("overhead_cost", "currency", "hours x rate x overhead")),
        fn=labour_cost),
    Formula(
        name="pert_duration", title="PERT expected duration and standard deviation",
        domain="time",
        description="Three-point (beta) estimate of an activity: expected time "
                    "t_e = (o + 4m + p) / 6, standard deviation sigma = (p - o) / 6, variance "
                    "sigma^2. Along a path, expected times and variances add. Requires "
                    "o <= m <= p.",
        reference="Malcolm, Roseboom, Clark & Fazar (1959), Application of a Technique for "
                  "Research and Development Program Evaluation, Operations Research 7(5) "
                  "646-669; PMI PMBOK Guide, three-point estimating",
        parameters=(
            Parameter("optimistic", "d", "optimistic duration o", 0.0, 1.0e5),
            Parameter("most_likely", "d", "most likely duration m", 0.0, 1.0e5),
            Parameter("pessimistic", "d", "pessimistic duration p", 0.0, 1.0e5)),
        outputs=(Output("expected", "d", "(o + 4m + p) / 6"),
                 Output("std_dev", "d", "(p - o) / 6"),
                 Output("variance", "d^2", "((p - o) / 6)^2")),
        fn=pert_duration, checks=(_ordered_estimates,)),
)
