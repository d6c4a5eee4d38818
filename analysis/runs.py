"""Run directories read back: each run's config.yaml, its TensorBoard scalars and the step of its
newest checkpoint. Game, variant, setting and seed come from the config, never from the directory
name; a directory under a hidden folder (a sweep's set-aside attempts) is listed, never counted."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.rundir import ASIDE, newest_step
from analysis.settings import Setting, setting_of
from configs import scalars
from configs.errors import UserError
from configs.load import YAML_ERRORS
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
ASIDE_REASON = "set aside when its run restarted from scratch (no checkpoint); not counted"


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
    setting: Setting
    seed: int
    total_steps: int
    """train.total_steps of the run's config.yaml (its latest launch's budget)."""
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
    def label(self) -> str:
        """The variant and its setting (`dqn [classic / train.total_steps=4000]`): the group whose
        seeds are aggregated together."""
        return self.setting.label

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
    """A directory that looked like a run (it holds a config.yaml) and is not counted."""

    path: Path
    reason: str
    kind: Literal["unreadable", "duplicate", "aside", "hidden"] = "unreadable"


@dataclass(frozen=True)
class Conflict:
    """One game and variant run under several settings: each setting is a group of its own."""

    game: str
    variant: str
    settings: tuple[tuple[str, int], ...]
    """(label, number of runs), by label."""


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


def hidden(path: Path, root: Path) -> Skipped | None:
    """Why a run directory under a hidden folder of `root` (a name starting with `.`) is not
    counted; None for one that is."""
    parts = path.relative_to(root).parts
    for i, part in enumerate(parts):
        if part.startswith("."):
            if parts[i : i + len(ASIDE.parts)] == ASIDE.parts:  # LOGDIR/.sweep/aside/<name>-<k>
                return Skipped(path, ASIDE_REASON, "aside")
            return Skipped(path, f"under the hidden folder {part}; not counted", "hidden")
    return None


def load_runs(root: Path) -> tuple[list[Run], list[Skipped]]:
    """Read every run under `root`; a UserError when there is none to read."""
    runs, skipped = [], []
    for path in find_run_dirs(root):
        not_counted = hidden(path, root)
        if not_counted is not None:
            skipped.append(not_counted)
            continue
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


def identity(run: Run) -> tuple:
    """Runs with the same identity are one seed of one experiment."""
    return run.game, run.variant, run.setting, run.seed


def without_duplicates(runs: list[Run]) -> tuple[list[Run], list[Skipped]]:
    """One run per (game, variant, setting, seed): a finished one before a partial one however
    far that went, then the one that went furthest, then the newest name. The others are
    listed, so that a rerun never counts as another seed and never silently replaces one."""
    best: dict[tuple, Run] = {}
    for run in sorted(runs, key=lambda r: (not r.partial, r.step, r.name)):
        best[identity(run)] = run
    kept = [r for r in runs if best[identity(r)] is r]
    skipped = [duplicate(r, best[identity(r)]) for r in runs if best[identity(r)] is not r]
    return kept, skipped


def duplicate(run: Run, kept: Run) -> Skipped:
    """Why `run` is not counted beside `kept`, the run of its identity that is."""
    if run.partial and not kept.partial:
        why = f"that run finished, this one did not (step {run.step:,} of {run.total_steps:,})"
    elif kept.step > run.step:
        why = f"that run went further (step {kept.step:,}, this one {run.step:,})"
    else:
        why = "the same progress, and the newest name counts"
    same = "same game, variant, setting and seed"
    return Skipped(run.path, f"duplicate of {kept.name} ({same}): {why}", "duplicate")


def conflicts(runs: list[Run]) -> list[Conflict]:
    """Every game and variant that `runs` hold under more than one setting, sorted."""
    counts = Counter((r.game, r.variant, r.label) for r in runs)
    pairs = sorted({(game, variant) for game, variant, _ in counts})
    found = []
    for game, variant in pairs:
        mine = sorted(
            (label, n) for (g, v, label), n in counts.items() if (g, v) == (game, variant)
        )
        if len(mine) > 1:
            found.append(Conflict(game, variant, tuple(mine)))
    return found


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
    try:
        setting = setting_of(config)
    except UserError as error:
        raise UserError(f"{path / 'config.yaml'}: {error}") from None
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
        setting=setting,
        seed=seed,
        total_steps=total_steps,
        step=newest_step(path),
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
        config = scalars.read((path / "config.yaml").read_text())  # as train.py reads YAML
    except (OSError, *YAML_ERRORS) as error:
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
