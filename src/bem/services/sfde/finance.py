"""Investment formulas: NPV and IRR of a level annuity, return on investment.

Cash flows: an initial investment I0 at t = 0, then a level payment C at the end of each of n
periods, discounted at a rate r per period (0.08 = 8 %).
"""

from __future__ import annotations

import numpy as np

from bem.services.sfde.engine import (
    Array,
    Columns,
    Formula,
    Output,
    Parameter,
    Problem,
    whole_number,
)

MAX_MONEY = 1.0e12  # currency units: far above any project; keeps products finite
IRR_LOW, IRR_HIGH = -0.99, 10.0  # IRR search range per period: -99 % .. +1000 %
_IRR_TOL = 1e-12  # relative step at which the root is taken as converged
_IRR_MAX_ITER = 200  # a safety net: rows converge in about 10 iterations
_SMALL_RATE = 1e-8  # below this |r| the slope uses its limit (no 0/0)


def annuity_factor(rate: Array, periods: Array) -> Array:
    """Present value of 1 per period for n periods: (1 - (1 + r)^-n) / r, n when r = 0."""
    safe = np.where(rate == 0.0, 1.0, rate)
    # expm1/log1p keep full precision for small rates, where 1 - (1 + r)^-n cancels.
    return np.where(rate == 0.0, periods, -np.expm1(-periods * np.log1p(rate)) / safe)


def log_annuity(rate: Array, periods: Array) -> tuple[Array, Array]:
    """(log a(r, n), d/dr log a(r, n)), finite over the whole IRR range where a overflows.

    With t = n log(1 + r) and u = 1 - e^-|t|: a = u / |r| for r > 0 and a = e^-t u / |r| for
    r < 0 (the e^-t that overflows stays in the log as -t). The slope is
    (n r / ((1 + r) (e^t - 1)) - 1) / r, with limit -(n + 1) / 2 at r = 0.
    """
    t = periods * np.log1p(rate)
    u = -np.expm1(-np.abs(t))
    zero = rate == 0.0
    log_a = np.where(zero, np.log(periods),
                     np.log(u) - np.log(np.abs(rate)) + np.maximum(-t, 0.0))
    small = np.abs(rate) < _SMALL_RATE
    r = np.where(small, 1.0, rate)
    growth = np.where(rate > 0.0, u / (1.0 - u), -u)  # e^t - 1, from u without cancellation
    slope = (periods * r / ((1.0 + r) * growth) - 1.0) / r
    return log_a, np.where(small, -(periods + 1.0) / 2.0, slope)


def npv_annuity(payment: Array, rate: Array, periods: Array, initial_investment: Array
                ) -> dict[str, Array]:
    present = payment * annuity_factor(rate, periods)
    return {"npv": present - initial_investment, "present_value": present}


def irr_annuity(initial_investment: Array, payment: Array, periods: Array) -> dict[str, Array]:
    """Safeguarded Newton iteration on g(r) = log(C a(r, n) / I0), all rows at once.

    The log makes g nearly linear in r (the NPV itself is exponential in n at negative
    rates, where plain Newton crawls). g falls strictly as r rises, so each row keeps a
    bracket [lo, hi] of its root and a Newton step leaving it is replaced by bisection.
    Only rows not yet converged are iterated. `_irr_in_range` has already rejected rows
    without a root in the range.
    """
    log_ratio = np.log(payment) - np.log(initial_investment)
    # Start from the better of two classic approximations: small rates,
    # a ~ n (1 + r)^(-(n + 1) / 2), and the perpetuity a ~ 1 / r.
    guess = np.maximum((periods * payment / initial_investment) ** (2.0 / (periods + 1.0))
                       - 1.0, payment / initial_investment - 1.0 / periods)
    rate = np.clip(np.nan_to_num(guess, nan=0.1), IRR_LOW, IRR_HIGH)
    lo = np.full(rate.shape, IRR_LOW)
    hi = np.full(rate.shape, IRR_HIGH)
    active = np.arange(rate.size)
    for _ in range(_IRR_MAX_ITER):
        if active.size == 0:
            break
        r, n = rate[active], periods[active]
        log_a, slope = log_annuity(r, n)
        g = log_ratio[active] + log_a
        lo[active] = np.where(g > 0, r, lo[active])
        hi[active] = np.where(g > 0, hi[active], r)
        newton = r - g / slope
        converged = np.abs(newton - r) <= _IRR_TOL * (1.0 + np.abs(r))
        inside = np.isfinite(newton) & (newton >= lo[active]) & (newton <= hi[active])
        rate[active] = np.where(inside | converged, newton,
                                0.5 * (lo[active] + hi[active]))
        active = active[~converged]
    return {"irr": rate, "irr_percent": rate * 100.0}


def _excess(rate: float, investment: Array, payment: Array, periods: Array) -> Array:
    """log(C a(r, n) / I0): positive while the payments are worth more than I0 at rate r."""
    log_a, _slope = log_annuity(np.full(periods.shape, rate), periods)
    return np.log(payment) - np.log(investment) + log_a


def _irr_in_range(columns: Columns) -> list[Problem]:
    investment, payment, periods = (columns["initial_investment"], columns["payment"],
                                    columns["periods"])
    paying = payment > 0.0
    at_low = np.where(paying, _excess(IRR_LOW, investment, payment, periods), 1.0)
    at_high = np.where(paying, _excess(IRR_HIGH, investment, payment, periods), -1.0)
    return [
        ("payment", ~paying, "not positive: the investment is never recovered, no IRR exists"),
        ("payment", ~(at_low > 0.0),
         f"too small: the IRR is below {IRR_LOW:.0%} per period (no IRR in the searched "
         f"range {IRR_LOW:.0%} .. {IRR_HIGH:.0%})"),
        ("payment", ~(at_high < 0.0),
         f"too large: the IRR is above {IRR_HIGH:.0%} per period (no IRR in the searched "
         f"range {IRR_LOW:.0%} .. {IRR_HIGH:.0%})"),
    ]


def roi(final_value: Array, cost: Array) -> dict[str, Array]:
    gain = final_value - cost
    return {"roi": gain / cost, "roi_percent": gain / cost * 100.0, "net_gain": gain}


_PERIODS = Parameter("periods", "1", "number of periods n (whole number)", 1.0, 1200.0)

FORMULAS = (
    Formula(
        name="npv_annuity", title="Net present value of a level annuity", domain="finance",
        description="NPV = C (1 - (1 + r)^-n) / r - I0 (C n - I0 when r = 0): present value "
                    "of n end-of-period payments C at rate r per period, less the initial "
                    "investment I0.",
        reference="Brealey, Myers & Allen, Principles of Corporate Finance, ch. 2 (present "
                  "value of an annuity)",
        parameters=(
            Parameter("payment", "currency", "payment C per period (negative = outflow)",
                      -MAX_MONEY, MAX_MONEY),
            Parameter("rate", "1/period", "discount rate r per period (0.08 = 8 %)", -0.9,
                      10.0),
            _PERIODS,
            Parameter("initial_investment", "currency", "investment I0 at t = 0", 0.0,
                      MAX_MONEY, 0.0)),
        outputs=(Output("npv", "currency", "C a(r, n) - I0"),
                 Output("present_value", "currency", "C a(r, n)")),
        fn=npv_annuity, checks=(whole_number("periods"),)),
    Formula(
        name="irr_annuity", title="Internal rate of return of a level annuity",
        domain="finance",
        description=f"The rate r at which C (1 - (1 + r)^-n) / r = I0 (NPV = 0), found per "
                    f"row by safeguarded Newton iteration (bisection fallback) in "
                    f"[{IRR_LOW:.0%}, {IRR_HIGH:.0%}] per period. A row whose IRR lies "
                    f"outside that range, or with C = 0, is rejected (422).",
        reference="Brealey, Myers & Allen, Principles of Corporate Finance, ch. 5 (internal "
                  "rate of return)",
        parameters=(
            Parameter("initial_investment", "currency", "investment I0 at t = 0", 0.01,
                      MAX_MONEY),
            Parameter("payment", "currency", "payment C received per period", 0.0, MAX_MONEY),
            _PERIODS),
        outputs=(Output("irr", "1/period", "r with NPV(r) = 0"),
                 Output("irr_percent", "%/period", "100 r")),
        fn=irr_annuity, checks=(whole_number("periods"), _irr_in_range)),
    Formula(
        name="roi", title="Return on investment", domain="finance",
        description="ROI = (final_value - cost) / cost, also as a percentage, with the net "
                    "gain final_value - cost. Not time-weighted (see npv_annuity, "
                    "irr_annuity).",
        reference="Standard definition of return on investment (e.g. CFA Institute, "
                  "Corporate Finance and Portfolio Management)",
        parameters=(
            Parameter("final_value", "currency", "value returned by the investment", 0.0,
                      MAX_MONEY),
            Parameter("cost", "currency", "cost of the investment", 0.01, MAX_MONEY)),
        outputs=(Output("roi", "1", "(final_value - cost) / cost"),
                 Output("roi_percent", "%", "100 ROI"),
                 Output("net_gain", "currency", "final_value - cost")),
        fn=roi),
)
