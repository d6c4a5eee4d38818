"""Intervals over seeds, as `python -m lab` prints them and the README quotes them.

A number that is an average (accuracy) is given as its mean ± the half-width of a 95% Student-t
interval over seeds. A number that is a ratio or a loss, whose seeds spread over orders of
magnitude, is averaged in log space: its geometric mean and the 95% Student-t interval of the
log values, mapped back, exp(m ± t·s/√n) with m and s the mean and sd of log x.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

LEVEL = 0.95
"""Coverage of every interval."""


def two_sided_t(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with `df` degrees of freedom, in closed form (Abramowitz &
    Stegun 1964, 26.7.3-4), θ = atan(t/√df), c = cos²θ:
    df even: sin θ · Σ_{k<df/2} c^k ∏_{j≤k} (2j−1)/(2j);
    df odd: (2/π)(θ + sin θ cos θ · Σ_{k<(df−1)/2} c^k ∏_{j≤k} 2j/(2j+1)), (2/π)θ for df = 1."""
    theta = math.atan(t / math.sqrt(df))
    c, term, total = math.cos(theta) ** 2, 1.0, 1.0
    if df % 2 == 0:
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * c
            total += term
        return math.sin(theta) * total
    if df == 1:
        return 2 * theta / math.pi
    for k in range(1, (df - 1) // 2):
        term *= 2 * k / (2 * k + 1) * c
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


def t_critical(level: float, df: int) -> float:
    """The t with P(|T| ≤ t) = level (bisection on `two_sided_t`, which rises with t)."""
    low, high = 0.0, 1.0
    while two_sided_t(high, df) < level:
        low, high = high, 2 * high
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if two_sided_t(mid, df) < level else (low, mid)
    return (low + high) / 2


def interval(values: Sequence[float], *, log_scale: bool) -> tuple[float, float, float]:
    """(centre, low, high): the mean and its 95% Student-t interval over the values, or on a log
    scale the geometric mean and the interval of log x mapped back; low = high = centre for a
    single value."""
    xs = [math.log(v) for v in values] if log_scale else list(values)
    centre = statistics.fmean(xs)
    half = 0.0
    if len(xs) > 1:
        half = t_critical(LEVEL, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    bounds = (centre, centre - half, centre + half)
    return tuple(math.exp(b) for b in bounds) if log_scale else bounds


def format_cell(values: Sequence[float], *, log_scale: bool) -> str:
    """'0.900 ± 0.248' (mean ± half-width) or, on a log scale, '10 [0.0328, 3.05e+03]' (geometric
    mean [interval], three significant figures); the centre alone for a single value. Values that
    are not finite (a diverged seed), or not positive on a log scale, are left out of the interval
    and counted in the cell ('…, 2 of 10 diverged'): they have no place on its scale."""
    usable = [v for v in values if math.isfinite(v) and (v > 0 or not log_scale)]
    dropped = f"{len(values) - len(usable)} of {len(values)} diverged"
    if not usable:
        return dropped
    centre, low, high = interval(usable, log_scale=log_scale)
    if log_scale:
        cell = f"{centre:.3g}" + (f" [{low:.3g}, {high:.3g}]" if len(usable) > 1 else "")
    else:
        cell = f"{centre:.3f}" + (f" ± {high - centre:.3f}" if len(usable) > 1 else "")
    return cell if len(usable) == len(values) else f"{cell}, {dropped}"


LEGEND = (
    "accuracy: mean ± 95% Student-t half-width over seeds; loss ratios and losses: geometric mean "
    "[95% Student-t interval in log space]"
)
"""What the cells of a table mean, printed under it."""
