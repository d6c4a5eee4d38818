"""Curves of several runs on one step grid: episode returns smoothed and resampled, probe figures
as their change from the initial network's value on the same probe batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.runs import Run, Series

GRID_POINTS = 100
SMOOTHING = 0.05
"""Episode returns are averaged over a trailing window of 5% of the run's episodes (at least 1)."""


@dataclass(frozen=True, eq=False)
class Curves:
    """Runs resampled on one grid: values [runs, len(steps)]."""

    steps: np.ndarray
    values: np.ndarray
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class Change:
    """How far a probe moved over one run: last value minus the initial network's value on the
    batch the last value was measured on."""

    start: float
    last: float
    from_step_zero: bool
    """False when the run has no baseline or step-0 measurement and its first value stands in."""

    @property
    def delta(self) -> float:
        return self.last - self.start


def smoothed(values: np.ndarray, fraction: float = SMOOTHING) -> np.ndarray:
    """Trailing moving average over max(1, round(fraction * N)) values (shorter at the start)."""
    window = max(1, round(fraction * len(values)))
    sums = np.cumsum(np.insert(values, 0, 0.0))
    index = np.arange(1, len(values) + 1)
    start = np.maximum(0, index - window)
    return (sums[index] - sums[start]) / (index - start)


def common_grid(series: list[Series], points: int = GRID_POINTS) -> np.ndarray | None:
    """Evenly spaced steps over the range every series covers; None if they share no range."""
    first = max(int(s.steps[0]) for s in series)
    last = min(int(s.steps[-1]) for s in series)
    if last <= first:
        return None
    return np.linspace(first, last, points)


def on_grid(runs: list[Run], series: list[Series]) -> Curves | None:
    """`series` (one per run, none empty) linearly interpolated on their common grid."""
    grid = common_grid(series)
    if grid is None:
        return None
    values = np.stack([np.interp(grid, s.steps, s.values) for s in series])
    return Curves(grid, values, tuple(runs))


def return_curves(runs: list[Run]) -> Curves | None:
    """Smoothed episode returns of `runs` (those with at least two episodes) on a common grid."""
    runs = [r for r in runs if len(r.returns) >= 2]
    series = [Series(r.returns.steps, smoothed(r.returns.values)) for r in runs]
    return on_grid(runs, series) if runs else None


def baseline_at(series: Series, baseline: Series | None) -> tuple[np.ndarray, bool]:
    """Each value's baseline: the initial network on the batch in use at its step (the latest
    baseline logged at or before it), and True; without baselines, the series' step-0 value (or
    its first value, then False)."""
    if baseline is None or len(baseline) == 0:
        return np.full(len(series), series.values[0]), bool(series.steps[0] == 0)
    index = np.searchsorted(baseline.steps, series.steps, side="right") - 1
    return baseline.values[np.maximum(index, 0)], True


def change(series: Series, baseline: Series | None = None) -> tuple[Series, bool]:
    """The series minus each value's baseline (`baseline_at`), and whether baselines were found."""
    start, found = baseline_at(series, baseline)
    return Series(series.steps, series.values - start), found


def probe_curves(runs: list[Run], key: str) -> tuple[Curves | None, bool]:
    """Change of probe `key` from its baseline for the runs that log it (at least two values),
    and whether every one of them had a baseline (or a step-0 value)."""
    runs = [r for r in runs if key in r.probes and len(r.probes[key]) >= 2]
    changes = [change(r.probes[key], r.baselines.get(key)) for r in runs]
    curves = on_grid(runs, [c for c, _ in changes]) if runs else None
    return curves, all(z for _, z in changes)


def probe_change(run: Run, key: str) -> Change | None:
    """The probe's last value against its baseline, or None if the run does not log it."""
    series = run.probes.get(key)
    if series is None or len(series) == 0:
        return None
    start, found = baseline_at(series, run.baselines.get(key))
    return Change(float(start[-1]), float(series.values[-1]), found)
