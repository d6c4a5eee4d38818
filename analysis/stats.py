"""Aggregate statistics through rliable (Agarwal et al. 2021, "Deep Reinforcement Learning at the
Edge of the Statistical Precipice"): IQM, median, mean and optimality gap with stratified bootstrap
confidence intervals, the probability of improvement, and bootstrap bands for mean curves. Nothing
here recomputes those statistics: it arranges scores into rliable's (runs x tasks) matrices.

Raw returns of different games are never pooled: they are on scales of their own, and an
aggregate over them would mostly measure the highest-scoring game. Across games only
human-normalised Atari scores are aggregated; every other game is a table of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from rliable import library as rly
from rliable import metrics

from analysis.runs import Run

AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "iqm": metrics.aggregate_iqm,
    "median": metrics.aggregate_median,
    "mean": metrics.aggregate_mean,
    "optimality_gap": metrics.aggregate_optimality_gap,
}
"""rliable's aggregates; the optimality gap (to a human-normalised score of 1) only where scores
are normalised."""
HUMAN_NORMALIZED = "human_normalized"
"""The group of Atari games with human reference scores, aggregated across games."""


@dataclass(frozen=True)
class Bootstrap:
    """How the stratified bootstrap is run (rliable's percentile method)."""

    reps: int = 2000
    """Bootstrap replications (rliable's paper uses 50,000 for final figures)."""
    seed: int = 0
    """Seed of numpy's global generator, from which rliable draws its resampling indices."""
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return {
            "reps": self.reps,
            "seed": self.seed,
            "confidence": self.confidence,
            "method": "percentile",
            "stratified": "over runs, within each game",
        }


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return {"value": self.value, "ci": [self.low, self.high]}


@dataclass(frozen=True, eq=False)
class ScoreTable:
    """Final scores of one group of games arranged for rliable: per variant a (runs x games) matrix,
    the same games for every variant and as many runs per game."""

    group: str
    """HUMAN_NORMALIZED, or the one game of a raw-return table."""
    normalized: bool
    """Human-normalised (Atari games with reference scores, across games) or the raw returns of
    one game (MinAtar, classic control, Atari games without reference scores)."""
    games: tuple[str, ...]
    scores: dict[str, np.ndarray]
    """Label (variant and setting, Run.label) -> its (runs x games) matrix."""
    runs: dict[str, tuple[Run, ...]]
    """The runs behind each label's matrix, in row-major order (run index, then game)."""
    left_out: tuple[tuple[Run, str], ...]
    """Finished runs not in any matrix, and why."""


@contextmanager
def numpy_seed(seed: int) -> Iterator[None]:
    """rliable's StratifiedBootstrap draws indices from numpy's global generator (np.random.choice),
    not from its `random_state`: seed that generator for the call, then put its state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def score_tables(runs: list[Run]) -> list[ScoreTable]:
    """Finished runs with a final return: one table across the human-normalised Atari games, and
    one per game of every other game (its raw returns alone)."""
    scored = [r for r in runs if not r.partial and r.final_score is not None]
    normalized = [r for r in scored if r.normalized]
    raw_games = sorted({r.game for r in scored if not r.normalized})
    tables = [score_table(HUMAN_NORMALIZED, normalized, normalized=True)] if normalized else []
    tables += [
        score_table(game, [r for r in scored if r.game == game], normalized=False)
        for game in raw_games
    ]
    return [t for t in tables if t.scores]


def score_table(group: str, runs: list[Run], *, normalized: bool) -> ScoreTable:
    """Rectangular matrices: the games every label ran, and per game the `n` lowest seeds where
    `n` is the label's smallest run count over those games."""
    if not runs:
        return ScoreTable(group, normalized, (), {}, {}, ())
    labels = sorted({r.label for r in runs})
    by_label = {v: [r for r in runs if r.label == v] for v in labels}
    games = sorted(set.intersection(*({r.game for r in rs} for rs in by_label.values())))
    left_out = [
        (r, "game not run by every variant and setting") for r in runs if r.game not in games
    ]
    scores, kept = {}, {}
    for label, label_runs in by_label.items():
        columns = [
            sorted((r for r in label_runs if r.game == g), key=lambda r: r.seed) for g in games
        ]
        n = min(len(c) for c in columns) if columns else 0
        left_out += [
            (r, f"more seeds than other games (matrix takes {n} per game)")
            for c in columns
            for r in c[n:]
        ]
        if n:
            rows = [[columns[j][i] for j in range(len(games))] for i in range(n)]
            scores[label] = np.array([[r.final_score for r in row] for row in rows])
            kept[label] = tuple(r for row in rows for r in row)
    return ScoreTable(group, normalized, tuple(games), scores, kept, tuple(left_out))


def aggregates(table: ScoreTable, bootstrap: Bootstrap) -> dict[str, dict[str, Interval]]:
    """Per label, each aggregate with its stratified bootstrap CI (one bootstrap for all)."""
    names = [n for n in AGGREGATES if table.normalized or n != "optimality_gap"]

    def func(scores: np.ndarray) -> np.ndarray:
        return np.array([AGGREGATES[n](scores) for n in names])

    result = {}
    for label, scores in table.scores.items():
        point, ci = interval_estimates(scores, func, bootstrap)
        result[label] = {
            n: Interval(float(point[i]), float(ci[0, i]), float(ci[1, i]))
            for i, n in enumerate(names)
        }
    return result


def baseline_label(table: ScoreTable, baseline: str) -> str | None:
    """The label P(improvement) compares with: `baseline` itself when it is a label of the
    table, else the table's only label of variant `baseline`; None when there is none or several
    (then no setting of it is the baseline more than another)."""
    if baseline in table.scores:
        return baseline
    mine = [label for label, runs in table.runs.items() if runs[0].variant == baseline]
    return mine[0] if len(mine) == 1 else None


def improvement(table: ScoreTable, baseline: str, bootstrap: Bootstrap) -> dict[str, Interval]:
    """P(X > baseline) for every other label X (rliable's probability of improvement, averaged
    over games), with an independent stratified bootstrap CI; {} without a baseline label."""
    over = baseline_label(table, baseline)
    if over is None:
        return {}

    def func(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.array([metrics.probability_of_improvement(x, y)])

    result = {}
    for label, scores in table.scores.items():
        if label != over:
            point, ci = interval_estimates((scores, table.scores[over]), func, bootstrap)
            result[label] = Interval(float(point[0]), float(ci[0, 0]), float(ci[1, 0]))
    return result


def mean_band(curves: np.ndarray, bootstrap: Bootstrap) -> tuple[np.ndarray, np.ndarray]:
    """Mean over runs of `curves` [runs, T] and its 95% bootstrap band [2, T] (lower, upper):
    rliable's stratified bootstrap over runs, on one task whose score is the whole curve."""
    point, ci = interval_estimates(curves[:, None, :], lambda s: s[:, 0, :].mean(axis=0), bootstrap)
    return point, ci


def interval_estimates(
    scores: np.ndarray | tuple[np.ndarray, ...],
    func: Callable[..., np.ndarray],
    bootstrap: Bootstrap,
) -> tuple[np.ndarray, np.ndarray]:
    """rliable's get_interval_estimates for one entry, seeded on its own: each variant's interval
    is reproducible alone, whatever else the report computes."""
    with numpy_seed(bootstrap.seed):
        point, ci = rly.get_interval_estimates(
            {"x": scores},
            func,
            reps=bootstrap.reps,
            confidence_interval_size=bootstrap.confidence,
            method="percentile",
        )
    return np.asarray(point["x"]), np.asarray(ci["x"])
