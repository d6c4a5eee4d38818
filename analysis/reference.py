"""Dopamine's published Atari training curves, to compare a run's returns with.

    python -m analysis.reference GAME [--agent A ...] [--every N]

Source: google/dopamine, `baselines/atari/data/<game>.json` (Apache-2.0, Copyright 2018 The
Dopamine Authors), read from one compact file, `dopamine_atari.csv.gz`, that
`python -m analysis.data.make_dopamine_reference CLONE` builds from a clone of Dopamine (with its
LICENSE and our NOTICE of the commit and the changes made). The file is not in this repository:
it is looked for where `PLASTICITY_DOPAMINE_DATA` points, then in `analysis/data/` (where the
script writes it), then in the `shared/data/` folder beside the checkout.

Conventions:
- A value is one run's average return over the *training* episodes of one iteration (raw game
  score, rewards unclipped, ε-greedy with ε = 0.01 after the decay) under Dopamine's protocol:
  sticky actions p = 0.25, frame skip 4, the minimal action set, 108k-frame episode cap. It is
  not an evaluation score; our `charts/episodic_return` are training episodes too.
- Iteration i is 1M frames: agent steps [250,000 i, 250,000 (i+1)) at frame skip 4, in general
  the steps s with floor(s · frame_skip / 10⁶) = i. 199 iterations (0-198) per run here. (Dopamine
  plays whole episodes until an iteration has 250,000 steps, so each one overshoots by less than
  an episode, at most 27,000 steps: the alignment is that close, not exact.)
- Five runs per game and agent, numbered 0-4 in the source's record order (the source does not
  label them); a run without a value at an iteration is NaN there and left out of its statistics.
- Spread over runs: min and max, and the sample standard deviation (ddof = 1).
- Percentile of a score x among the n runs' values v at one iteration (scipy's kind="mean"):
  100 · (#{v < x} + ½ #{v = x}) / n.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from configs.errors import UserError
from envs.atari import atari_rom

DATA_NAME = "dopamine_atari.csv.gz"
DATA_ENV = "PLASTICITY_DOPAMINE_DATA"
PLACES = (
    Path(__file__).resolve().parent / "data" / DATA_NAME,
    Path(__file__).resolve().parents[2] / "shared" / "data" / DATA_NAME,
)
"""Where the data file is looked for when PLASTICITY_DOPAMINE_DATA is not set."""
SOURCE = "dopamine"
FRAMES_PER_ITERATION = 1_000_000
FRAME_SKIP = 4
"""Dopamine's frame skip: an iteration is 250,000 agent steps."""
AGENTS = {
    "dqn_adam_mse": "DQN (Adam + MSE in JAX)",
    "dqn": "DQN",
    "c51": "C51",
    "rainbow": "Rainbow",
    "iqn": "IQN",
    "quantile": "Quantile (JAX)",
}
"""Short name -> the source's agent name. `dqn_adam_mse` is Dopamine's JAX DQN as its dqn.gin
sets it (Adam at lr 6.25e-5 and eps 1.5e-4, MSE loss), the configuration our `dqn` variant
reproduces; `dqn` is the source's "DQN" (by its README the TensorFlow agent: RMSProp, Huber
loss); `quantile` is QR-DQN."""
DEFAULT_AGENTS = ("dqn_adam_mse",)
PERCENTILE_RULE = "100 * (#{v < x} + 0.5 * #{v = x}) / n over the n reference runs' values v"


@dataclass(frozen=True)
class Table:
    """The shipped file: its `# key: value` header lines and its rows of cells, by game."""

    header: dict[str, str]
    rows: dict[str, list[list[str]]]


def data_file() -> Path:
    """The data file: where PLASTICITY_DOPAMINE_DATA points, else the first of `PLACES` found."""
    if os.environ.get(DATA_ENV):
        places = (Path(os.environ[DATA_ENV]),)
    else:
        places = PLACES
    for place in places:
        if place.is_file():
            return place
    raise UserError(
        f"Dopamine's baseline data is not on this machine (looked for {', '.join(map(str, places))}"
        "). Build it from a clone of google/dopamine with `python -m "
        "analysis.data.make_dopamine_reference CLONE`, or set PLASTICITY_DOPAMINE_DATA to the file."
    )


def has_data() -> bool:
    try:
        data_file()
    except UserError:
        return False
    return True


@cache
def table() -> Table:
    """The data file, read once."""
    text = gzip.decompress(data_file().read_bytes()).decode()
    lines = text.splitlines()
    comments = [line[2:] for line in lines if line.startswith("# ")]
    header = dict(c.split(": ", 1) for c in comments if ": " in c)
    rows: dict[str, list[list[str]]] = {}
    for row in list(csv.reader(io.StringIO("\n".join(lines[len(comments) + 1 :])))):
        rows.setdefault(row[0], []).append(row)
    return Table(header, rows)


def games() -> tuple[str, ...]:
    """ROM ids of the games with a reference, sorted."""
    return tuple(sorted(table().rows))


def reference_game(game: str) -> str:
    """The ROM id for any spelling the suite accepts (`Breakout`, `ALE/Breakout-v5`,
    `space_invaders`) or Dopamine's (`spaceinvaders`); a UserError listing the games otherwise."""
    squashed = {g.replace("_", ""): g for g in games()}
    rom = atari_rom(game) or squashed.get(game.strip().lower().replace("_", ""))
    if rom in table().rows:
        return rom
    what = "is not an Atari game" if rom is None else "has no published Dopamine baseline"
    raise UserError(f"'{game}' {what}; games with one: {', '.join(games())}.")


def agent_name(agent: str) -> str:
    """The short name for a short or source name (any case); a UserError listing them otherwise."""
    names = {k: k for k in AGENTS} | {v.lower(): k for k, v in AGENTS.items()}
    short = names.get(agent.strip().lower())
    if short is None:
        known = ", ".join(f"{k} ({v})" for k, v in AGENTS.items())
        raise UserError(f"Unknown Dopamine agent '{agent}'; known: {known}.")
    return short


def parse_spec(spec: str) -> tuple[str, ...]:
    """`dopamine` -> the default agents; `dopamine:c51,rainbow` -> those (short names)."""
    source, _, agents = spec.partition(":")
    if source.strip().lower() != SOURCE:
        raise UserError(
            f"Unknown reference '{spec}': use {SOURCE} or {SOURCE}:AGENT[,AGENT...] with AGENT "
            f"one of {', '.join(AGENTS)}."
        )
    names = [agent_name(a) for a in agents.split(",") if a.strip()] if agents else DEFAULT_AGENTS
    return tuple(dict.fromkeys(names))


def unavailable(game: str, is_atari: bool) -> str | None:
    """Why a game (a ROM id, or another env's name) has no reference; None when it has one."""
    if not is_atari:
        return "not an Atari game (Dopamine's baselines are Atari games only)"
    if game not in table().rows:
        return "an Atari game Dopamine publishes no baseline for"
    return None


def iteration_of(step: int, *, frame_skip: int = FRAME_SKIP) -> int:
    """The iteration holding agent step `step`: floor(step · frame_skip / 10⁶)."""
    return step * frame_skip // FRAMES_PER_ITERATION


def iteration_steps(iteration: int, *, frame_skip: int = FRAME_SKIP) -> tuple[int, int]:
    """Agent steps [first, end) of an iteration: [250,000 i, 250,000 (i+1)) at frame skip 4."""
    first = -(-iteration * FRAMES_PER_ITERATION // frame_skip)
    return first, -(-(iteration + 1) * FRAMES_PER_ITERATION // frame_skip)


def edges_until(curve: Curve, end: float, *, frame_skip: int = FRAME_SKIP) -> np.ndarray:
    """Agent-step edges [e_0 = 0, ..., e_n] of the curve's first n iterations, those that start
    before step `end`, the last one cut at `end` (n >= 1)."""
    end_step = max(1, int(np.ceil(end)))
    count = min(curve.iterations, iteration_of(end_step - 1, frame_skip=frame_skip) + 1)
    firsts = [iteration_steps(i, frame_skip=frame_skip)[0] for i in range(count)]
    last = iteration_steps(count - 1, frame_skip=frame_skip)[1]
    return np.array([*firsts, min(last, end_step)], dtype=np.int64)


def percentile(score: float, values: np.ndarray) -> float:
    """100 · (#{v < x} + ½ #{v = x}) / n: where `score` falls among the n `values`."""
    below, equal = np.sum(values < score), np.sum(values == score)
    return float(100.0 * (below + 0.5 * equal) / len(values))


@dataclass(frozen=True)
class Match:
    """The reference at one iteration, and where a score falls among its runs."""

    game: str
    agent: str
    iteration: int
    runs: tuple[float, ...]
    """The value of every run that has one at this iteration."""
    score: float | None = None
    percentile: float | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.runs))

    @property
    def low(self) -> float:
        return min(self.runs)

    @property
    def high(self) -> float:
        return max(self.runs)

    def to_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "reference_runs": len(self.runs),
            "reference_mean": self.mean,
            "reference_min": self.low,
            "reference_max": self.high,
            "percentile": self.percentile,
        }


@dataclass(frozen=True, eq=False)
class Curve:
    """One agent's runs on one game: values [runs, iterations], NaN where a run has none."""

    game: str
    agent: str
    """Short name, a key of AGENTS."""
    values: np.ndarray

    @property
    def source_agent(self) -> str:
        return AGENTS[self.agent]

    @property
    def iterations(self) -> int:
        return self.values.shape[1]

    def mean(self) -> np.ndarray:
        """Mean over the runs with a value, per iteration."""
        return np.nanmean(self.values, axis=0)

    def low(self) -> np.ndarray:
        return np.nanmin(self.values, axis=0)

    def high(self) -> np.ndarray:
        return np.nanmax(self.values, axis=0)

    def std(self) -> np.ndarray:
        """Sample standard deviation over runs (ddof = 1), NaN where fewer than two runs."""
        present = np.sum(~np.isnan(self.values), axis=0)
        safe = np.where(present >= 2, self.values, 0.0)
        return np.where(present >= 2, np.nanstd(safe, axis=0, ddof=1), np.nan)

    def at(self, iteration: int, score: float | None = None) -> Match | None:
        """The runs' values at `iteration` and the percentile of `score` among them; None past
        the last iteration or where no run has a value."""
        if not 0 <= iteration < self.iterations:
            return None
        column = self.values[:, iteration]
        runs = column[~np.isnan(column)]
        if len(runs) == 0:
            return None
        rank = None if score is None else percentile(score, runs)
        return Match(self.game, self.agent, iteration, tuple(map(float, runs)), score, rank)


@cache
def load(game: str, agent: str = DEFAULT_AGENTS[0]) -> Curve:
    """The reference curve of `agent` (short or source name) on `game` (any spelling)."""
    game, agent = reference_game(game), agent_name(agent)
    rows = [r for r in table().rows[game] if r[1] == AGENTS[agent]]
    if not rows:
        raise UserError(f"Dopamine publishes no {agent} runs on {game}.")
    values = np.array([[float(c) if c else np.nan for c in r[3:]] for r in rows])
    kept = ~np.all(np.isnan(values), axis=0)
    values = values[:, : int(np.flatnonzero(kept)[-1]) + 1]
    values.setflags(write=False)
    return Curve(game, agent, values)


def matched(
    game: str,
    agent: str,
    step: int,
    *,
    score: float | None = None,
    frame_skip: int = FRAME_SKIP,
) -> Match | None:
    """The reference at the iteration holding agent step `step` (floor(step · frame_skip / 10⁶)),
    with the percentile of `score` among its runs; None past the reference's last iteration."""
    return load(game, agent).at(iteration_of(step, frame_skip=frame_skip), score)


@dataclass(frozen=True)
class Comparison:
    """A run's episodes within one iteration against the reference there."""

    steps: tuple[int, int]
    """Agent steps [first, end) of the iteration."""
    episodes: int
    mean_return: float
    """Mean return of the run's episodes that ended at a step within `steps`."""
    reference: Match

    def to_dict(self) -> dict:
        return {
            "steps": list(self.steps),
            "episodes": self.episodes,
            "return": self.mean_return,
            **self.reference.to_dict(),
        }


def compare(
    curve: Curve, steps: np.ndarray, returns: np.ndarray, *, frame_skip: int = FRAME_SKIP
) -> list[Comparison]:
    """Per iteration with episodes: the mean of the returns logged at its steps, beside the
    reference there and its percentile among the reference runs (iterations past the reference's
    last are left out)."""
    found = []
    iterations = np.asarray(steps, dtype=np.int64) * frame_skip // FRAMES_PER_ITERATION
    for iteration in np.unique(iterations):
        mine = np.asarray(returns, dtype=np.float64)[iterations == iteration]
        score = float(np.mean(mine))
        match = curve.at(int(iteration), score)
        if match is not None:
            span = iteration_steps(int(iteration), frame_skip=frame_skip)
            found.append(Comparison(span, len(mine), score, match))
    return found


def shown_iterations(count: int, every: int | None) -> list[int]:
    """0-9, then every 10th, and the last; or every `every`-th and the last."""
    picked = range(0, count, every) if every else [*range(min(10, count)), *range(10, count, 10)]
    return sorted({*picked, count - 1})


def format_table(game: str, agents: tuple[str, ...], every: int | None = None) -> str:
    """The CLI's table: per shown iteration, each agent's mean, min and max over its runs."""
    curves = [load(game, a) for a in agents]
    count = max(c.iterations for c in curves)
    width = 10
    names = "".join(f"{c.agent:>{3 * width}}" for c in curves)
    columns = "".join(f"{'mean':>{width}}{'min':>{width}}{'max':>{width}}" for _ in curves)
    lines = [
        f"{curves[0].game}: Dopamine's training returns per iteration of 1M frames (250k agent "
        f"steps), over each agent's runs. {table().header.get('source', '')}",
        f"{'':>9}{'':>8}{names}",
        f"{'iteration':>9}{'steps':>8}{columns}",
    ]
    for i in shown_iterations(count, every):
        cells = "".join(cells_at(c, i, width) for c in curves)
        lines.append(f"{i:>9}{f'{i / 4:g}M':>8}{cells}")
    return "\n".join(lines)


def cells_at(curve: Curve, iteration: int, width: int) -> str:
    match = curve.at(iteration)
    if match is None:
        return f"{'—':>{3 * width}}"
    return "".join(f"{v:>{width}.1f}" for v in (match.mean, match.low, match.high))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m analysis.reference",
        description="Print Dopamine's published training returns for one Atari game.",
    )
    p.add_argument("game", metavar="GAME", help="Breakout, breakout, ALE/Breakout-v5, ...")
    p.add_argument(
        "--agent", action="append", help=f"one of {', '.join(AGENTS)} (repeatable; default all)"
    )
    p.add_argument("--every", type=int, help="every N-th iteration (default 0-9, then every 10th)")
    args = p.parse_args(argv)
    try:
        if args.every is not None and args.every < 1:
            raise UserError(f"--every ({args.every}) must be >= 1.")
        agents = tuple(agent_name(a) for a in args.agent) if args.agent else tuple(AGENTS)
        text = format_table(args.game, agents, args.every)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
