"""Grid expansion and run naming: (games x variants x seeds) -> the train.py command of each run,
or of several seeds of one (game, variant) trained in one process."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import configs
from configs.errors import UserError
from configs.load import load_yaml
from envs import resolve_env_id

TRAIN_PY = Path(__file__).resolve().parents[1] / "train.py"
SEED_FIELD = "{seed}"
"""What train.py's --run-name holds for --seeds naming several: each seed's number replaces it."""


def run_name(game: str, variant: str, seed: int | str) -> str:
    """A run directory's name: a function of (game, variant, seed) alone. With seeds ('1-5') it
    names a process's log (sweeps.pack); with SEED_FIELD, the --run-name of a process's seeds."""
    return f"{game}__{variant}__s{seed}"


@dataclass(frozen=True)
class Run:
    """One run of the sweep: what train.py gets for --env, --variant and --seed, and its name."""

    env: str
    """The --env flag as the user spelled it."""
    game: str
    """The canonical game or env id (train.py's own naming: `pong`, `CartPole-v1`)."""
    variant: str
    seed: int

    @property
    def name(self) -> str:
        return run_name(self.game, self.variant, self.seed)


@dataclass(frozen=True)
class Options:
    """The flags every run of the sweep shares."""

    logdir: Path
    preset: str | None = None
    config_file: str | None = None
    total_steps: int | None = None
    sets: tuple[str, ...] = ()
    tracking: tuple[str, ...] = ()
    """train.py's --track flags (training.tracking.track_argv), passed on to every run."""


def split_list(text: str, flag: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']; an empty item is a UserError naming the flag."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise UserError(f"{flag} '{text}' has an empty item; separate items with single commas.")
    return items


def parse_seeds(text: str) -> list[int]:
    """'1,2,3' or '1-3' (or a mix) -> [1, 2, 3]; anything else is a UserError."""
    seeds: list[int] = []
    for item in split_list(text, "--seeds"):
        low, dash, high = item.partition("-")
        if not (low.isdigit() and (not dash or high.isdigit())):
            raise UserError(
                f"--seeds '{text}': '{item}' is not a seed; give whole numbers >= 0 joined by "
                "commas, or a range such as 1-5."
            )
        if int(high or low) < int(low):
            raise UserError(f"--seeds '{text}': '{item}' is an empty range; write ranges low-high.")
        seeds += range(int(low), int(high or low) + 1)
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds '{text}' names a seed twice; give each seed once.")
    return seeds


def format_seeds(seeds: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3,5': the inverse of parse_seeds, consecutive seeds as ranges."""
    ranges: list[list[int]] = []
    for seed in seeds:
        if ranges and seed == ranges[-1][-1] + 1:
            ranges[-1][1:] = [seed]
        else:
            ranges.append([seed])
    return ",".join("-".join(map(str, r)) for r in ranges)


def grid_variants(grid: str) -> list[str]:
    """The variants of a grid: a name from configs/grids/ or a YAML file with a `variants` list."""
    if grid in configs.available("grids") or not (
        grid.endswith((".yaml", ".yml")) or Path(grid).is_file()
    ):
        return configs.grid_variants(grid)
    variants = load_yaml(Path(grid), "Grid file").get("variants")
    if not isinstance(variants, list) or not variants:
        raise UserError(f"Grid file {grid} needs a non-empty `variants:` list of variants.")
    return [str(v) for v in variants]


def expand(envs: list[str], variants: list[str], seeds: list[int]) -> list[Run]:
    """Every (env, variant, seed), seed-major so that early runs already compare the variants;
    two items that name the same run (`Pong` and `pong`) are a UserError."""
    runs, seen = [], set()
    games = {env: resolve_env_id(env)[0] for env in envs}
    for seed in seeds:
        for env in envs:
            for variant in variants:
                label = "+".join(o.strip() for o in variant.split("+"))
                run = Run(env=env, game=games[env], variant=label, seed=seed)
                if run.name in seen:
                    raise UserError(f"The sweep lists run {run.name} twice; drop the duplicate.")
                seen.add(run.name)
                runs.append(run)
    return runs


def train_argv(runs: list[Run], options: Options, extra_sets: tuple[str, ...] = ()) -> list[str]:
    """The train.py command of one run (--seed), or of several seeds of one (game, variant) in
    one process (--seeds, the run name holding SEED_FIELD); fixed run names make a rerun resume
    each run."""
    first = runs[0]
    argv = [sys.executable, str(TRAIN_PY), "--env", first.env, "--variant", first.variant]
    if len(runs) == 1:
        argv += ["--seed", str(first.seed)]
        name = first.name
    else:
        argv += ["--seeds", format_seeds([run.seed for run in runs])]
        name = run_name(first.game, first.variant, SEED_FIELD)
    if options.preset:
        argv += ["--preset", options.preset]
    if options.config_file:
        argv += ["--config", options.config_file]
    if options.total_steps is not None:
        argv += ["--total-steps", str(options.total_steps)]
    for assignment in (*options.sets, *extra_sets):
        argv += ["--set", assignment]
    return [*argv, *options.tracking, "--logdir", str(options.logdir), "--run-name", name]


def command_line(argv: list[str]) -> str:
    """The command as a shell would take it."""
    return shlex.join(argv)
