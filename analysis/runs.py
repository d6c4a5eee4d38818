"""Run directories read back: each run's config.yaml, its TensorBoard scalars and the step of its
newest checkpoint. Game, variant and seed come from the config, never from the directory name."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.checkpoint import NAME as CHECKPOINT_NAME
from agents.checkpoint import list_checkpoints
from configs.errors import UserError
from envs import human_normalized, resolve_env_id

RETURN_TAG = "charts/episodic_return"
REFILL_TAG = "charts/replay_refilled"
"""Logged by train.py at each resume that starts from an empty replay buffer."""
PROBE_KEYS = (
    "dormant_fraction",
    "linearized_fraction",
    "param_norm",
    "feature_rank",
    "target_magnitude",
    "probe_fit_loss",
)
"""Whole-network probe figures the report plots, logged as `plasticity/<key>`."""
BASELINE_PREFIX = "plasticity_baseline/"
"""The initial network's figures on each probe batch, at the step the batch is first used."""
FINAL_FRACTION = 0.1
"""A run's final return is the mean of its last 10% of episodes (at least one)."""
FINAL_RULE = "mean of the last max(1, floor(N/10)) of a run's N episode returns"


@dataclass(frozen=True, eq=False)
class Series:
    """One scalar tag of one run: values at environment steps, in step order."""

    steps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True, eq=False)
class Run:
    """What the report needs to know about one run directory."""

    path: Path
    game: str
    """ROM id (`pong`) for Atari, the gymnasium id (`CartPole-v1`) otherwise."""
    is_atari: bool
    variant: str
    seed: int
    total_steps: int
    """train.total_steps of the run's config.yaml."""
    step: int
    """Step of the newest checkpoint (0 when there is none)."""
    returns: Series
    probes: dict[str, Series] = field(default_factory=dict)
    frame_skip: int = 4
    """env.frame_skip of the config: an agent step is this many frames (Atari)."""
    baselines: dict[str, Series] = field(default_factory=dict)
    """`plasticity_baseline/<key>`: the initial network on each probe batch (absent in runs
    logged before baselines were: their probes' step-0 value stands in)."""
    refilled_at: tuple[int, ...] = ()
    """Steps at which a resume started from an empty replay buffer (charts/replay_refilled)."""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def partial(self) -> bool:
        """Still short of its budget: the newest checkpoint is before train.total_steps."""
        return self.step < self.total_steps

    @property
    def final_return(self) -> float | None:
        """Mean raw return of the last 10% of episodes (at least one); None without episodes."""
        return final_return(self.returns.values)

    @property
    def final_score(self) -> float | None:
        """The final return, human-normalised for an Atari game with reference scores."""
        value = self.final_return
        if value is None or not self.normalized:
            return value
        return human_normalized(self.game, value)

    @property
    def normalized(self) -> bool:
        """Whether this run's scores are human-normalised (Atari games with reference scores)."""
        return self.is_atari and human_normalized(self.game, 0.0) is not None


@dataclass(frozen=True)
class Skipped:
    """A directory that looked like a run but could not be read."""

    path: Path
    reason: str


def final_return(values: np.ndarray) -> float | None:
    """Mean of the last max(1, floor(10% of N)) of N episode returns; None when N = 0."""
    if len(values) == 0:
        return None
    count = max(1, math.floor(FINAL_FRACTION * len(values)))
    return float(np.mean(values[-count:]))


def find_run_dirs(root: Path) -> list[Path]:
    """Every directory under `root` (or `root` itself) that holds a config.yaml, sorted."""
    if not root.is_dir():
        raise UserError(f"RUNS_DIR {root} does not exist or is not a directory.")
    return sorted(path.parent for path in root.rglob("config.yaml"))


def load_runs(root: Path) -> tuple[list[Run], list[Skipped]]:
    """Read every run under `root`; a UserError when there is none to read."""
    runs, skipped = [], []
    for path in find_run_dirs(root):
        try:
            runs.append(read_run(path))
        except UserError as error:
            skipped.append(Skipped(path, str(error)))
    runs, duplicates = without_duplicates(runs)
    skipped += duplicates
    if not runs:
        found = f" ({len(skipped)} unreadable: {skipped[0].reason})" if skipped else ""
        raise UserError(
            f"No runs found under {root}{found}: a run directory holds the config.yaml, "
            "TensorBoard events and checkpoints that train.py writes."
        )
    return runs, skipped


def without_duplicates(runs: list[Run]) -> tuple[list[Run], list[Skipped]]:
    """One run per (game, variant, seed): the one that went furthest (the newest name on a tie);
    the others are skipped, so that a rerun never counts as another seed."""
    best: dict[tuple, Run] = {}
    for run in sorted(runs, key=lambda r: (r.step, r.name)):
        best[(run.game, run.variant, run.seed)] = run
    kept = [r for r in runs if best[(r.game, r.variant, r.seed)] is r]
    skipped = [
        Skipped(r.path, f"same game, variant and seed as {best[(r.game, r.variant, r.seed)].name}")
        for r in runs
        if best[(r.game, r.variant, r.seed)] is not r
    ]
    return kept, skipped


def read_run(path: Path) -> Run:
    """One run directory: its config, scalars and newest checkpoint step."""
    config = read_config(path)
    try:
        game, is_atari = resolve_env_id(str(config["env"]["id"]))
        variant, seed = str(config["variant"]), int(config["train"]["seed"])
        total_steps = int(config["train"]["total_steps"])
        frame_skip = int(config["env"].get("frame_skip", 4))
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{path / 'config.yaml'} lacks a key the report needs: {error}") from None
    scalars = read_scalars(path)
    probes = {k: scalars[f"plasticity/{k}"] for k in PROBE_KEYS if f"plasticity/{k}" in scalars}
    baselines = {
        k: scalars[BASELINE_PREFIX + k] for k in PROBE_KEYS if BASELINE_PREFIX + k in scalars
    }
    empty = Series(np.zeros(0, dtype=np.int64), np.zeros(0))
    return Run(
        path=path,
        game=game,
        is_atari=is_atari,
        variant=variant,
        seed=seed,
        total_steps=total_steps,
        step=checkpoint_step(path),
        returns=scalars.get(RETURN_TAG, empty),
        probes=probes,
        baselines=baselines,
        frame_skip=frame_skip,
        refilled_at=tuple(int(s) for s in scalars[REFILL_TAG].steps)
        if REFILL_TAG in scalars
        else (),
    )


def read_config(path: Path) -> dict:
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0]
        raise UserError(f"Cannot read {path / 'config.yaml'}: {reason}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path / 'config.yaml'} is not a mapping of config keys.")
    return config


def read_scalars(path: Path) -> dict[str, Series]:
    """Every scalar tag of the run's event files (all of them: a resumed run writes several)."""
    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    series = {}
    for tag in events.Tags()["scalars"]:
        points = sorted(events.Scalars(tag), key=lambda e: e.step)  # stable: ties keep file order
        steps = np.array([e.step for e in points], dtype=np.int64)
        series[tag] = Series(steps, np.array([e.value for e in points], dtype=np.float64))
    return series


def checkpoint_step(path: Path) -> int:
    """The step of the run's newest `ckpt_<step>.pt`, or 0 when it has none."""
    newest = list_checkpoints(path)
    return int(CHECKPOINT_NAME.match(newest[-1].name).group(1)) if newest else 0
