"""Experiment tracking on Weights & Biases: `train.py --track`, the optional [wandb] extra.

TensorBoard stays the reference: training.logger writes every event, and a tracked run's logger
also forwards each (tag, value, step) to a WandbMirror, which changes nothing on the TensorBoard
side. Why a mirror rather than CleanRL's `wandb.init(sync_tensorboard=True)`: that patches
TensorBoard's writer for the whole process, and one process trains several seeds (--seeds), each
its own run; here each seed owns its W&B Run object and logs only to it (never `wandb.log`).

The step axis is `global_step` (CleanRL's), the events' own step: W&B's internal step may only
grow, but the events' steps do not (the probes' step-0 baseline is logged once learning starts),
so every row carries `global_step` and every metric is plotted against it.
"""

from __future__ import annotations

import argparse
import secrets
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import yaml

import configs
from agents.rundir import write_text
from configs import Config, UserError
from configs.load import load_yaml
from training.logger import run_hparams

INSTALL = 'pip install -e ".[wandb]"'
ID_FILE = "wandb_id"
"""The run directory's file holding its W&B run id, so that a resume continues the same W&B run."""
PLACE_FILE = "wandb.yaml"
"""The run directory's W&B project, entity and group, so that a resume (or evaluate.py) without
those flags continues the run where it is, not in a new one of the default project."""
STEP = "global_step"
DEFAULT_PROJECT = "plasticity-suite"


def add_flags(parser: argparse.ArgumentParser) -> None:
    """--track and its W&B flags, as CleanRL spells them (train.py, sweep.py, evaluate.py)."""
    parser.add_argument(
        "--track",
        action="store_true",
        help="also log to Weights & Biases (the [wandb] extra; WANDB_MODE=offline writes locally)",
    )
    parser.add_argument(
        "--wandb-project",
        help=f"default {DEFAULT_PROJECT}, or where a resumed run already is",
    )
    parser.add_argument("--wandb-entity", help="W&B team or user (default: your own)")
    parser.add_argument("--wandb-group", help="W&B group (default: the run's variant)")


def track_argv(args: argparse.Namespace) -> tuple[str, ...]:
    """The tracking flags to pass on to each train.py a sweep launches (none without --track)."""
    if not args.track:
        return ()
    argv = ["--track"]
    if args.wandb_project:
        argv += ["--wandb-project", args.wandb_project]
    if args.wandb_entity:
        argv += ["--wandb-entity", args.wandb_entity]
    if args.wandb_group:
        argv += ["--wandb-group", args.wandb_group]
    return tuple(argv)


def require_wandb() -> ModuleType:
    """wandb, or a UserError naming the extra that installs it."""
    try:
        import wandb
    except ImportError as error:
        missing = error.name or "wandb"
        raise UserError(
            f"--track needs the optional [wandb] extra ({missing} is not installed): {INSTALL}"
        ) from None
    return wandb


@dataclass(frozen=True)
class Tracking:
    """Where a tracked run goes on W&B."""

    project: str | None = None
    """None: the run's own (PLACE_FILE), else DEFAULT_PROJECT."""
    entity: str | None = None
    group: str | None = None
    """None: the run's own, else its variant."""

    def place(self, run_dir: Path, config: Config) -> dict[str, str | None]:
        """The project, entity and group of `run_dir`'s W&B run: what it was started with (kept
        in PLACE_FILE), else these flags and the defaults; a flag that names another place than
        the run's own is refused, since W&B would then start a second run under the same id."""
        path = run_dir / PLACE_FILE
        asked = {"project": self.project, "entity": self.entity, "group": self.group}
        if not path.is_file():
            place = {
                "project": self.project or DEFAULT_PROJECT,
                "entity": self.entity,
                "group": self.group or config.variant,
            }
            write_text(path, yaml.safe_dump(place, sort_keys=False))
            return place
        place = load_yaml(path, "W&B place")
        for key, value in asked.items():
            if value is not None and value != place.get(key):
                raise UserError(
                    f"--wandb-{key} {value} differs from {place.get(key)}, where the W&B run of "
                    f"{run_dir} already is ({path}); leave the flag out to continue it there."
                )
        return place

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Tracking | None:
        """None without --track; with it, wandb must be importable (checked before any run)."""
        if not args.track:
            return None
        require_wandb()
        return cls(args.wandb_project, args.wandb_entity, args.wandb_group)


def run_id(run_dir: Path) -> str:
    """The run directory's W&B id: the one it holds, or a new one written atomically."""
    path = run_dir / ID_FILE
    if path.is_file():
        return path.read_text().strip()
    new = secrets.token_hex(6)  # W&B ids: up to 64 of [a-z0-9_-]
    write_text(path, new + "\n")
    return new


class WandbMirror:
    """One run's W&B Run: scalars gathered into one row per step, the config, videos."""

    def __init__(self, run: object) -> None:
        self.run = run
        self.row: dict[str, float] = {}
        self.step = 0

    @classmethod
    def start(cls, tracking: Tracking, run_dir: Path, config: Config) -> WandbMirror:
        """Start (or, with the id its directory holds, resume) the W&B run of `run_dir`, named as
        the directory and grouped by variant; its config is the resolved one plus the hparams."""
        wandb = require_wandb()
        place = tracking.place(run_dir, config)
        try:
            run = wandb.init(
                project=place["project"],
                entity=place["entity"],
                group=place["group"],
                name=run_dir.name,
                id=run_id(run_dir),
                resume="allow",
                config={"hparams": run_hparams(config), **configs.to_dict(config)},
                reinit="create_new",  # one Run per seed of this process
                # The console is every seed's at once: it stays out of each seed's run.
                settings=wandb.Settings(console="off"),
            )
        except wandb.errors.Error as error:
            raise UserError(
                f"W&B could not start the run of {run_dir}: {error} (WANDB_MODE=offline writes "
                "it locally; `wandb sync` uploads it later)."
            ) from None
        run.define_metric(STEP)
        run.define_metric("*", step_metric=STEP)
        return cls(run)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.row and (step != self.step or tag in self.row):
            self.commit()
        self.row[tag], self.step = float(value), step

    def commit(self) -> None:
        """Log the row gathered so far (the logger's flush does this before a checkpoint)."""
        if self.row:
            self.run.log({**self.row, STEP: self.step})
            self.row = {}

    def video(self, tag: str, path: Path, step: int) -> None:
        self.commit()
        wandb = require_wandb()
        self.run.log({tag: wandb.Video(str(path), format="mp4"), STEP: step})

    def finish(self, *, failed: bool = False) -> None:
        """End the run: `failed` (a diverged or crashed seed) marks it failed on W&B."""
        self.commit()
        self.run.finish(exit_code=1 if failed else 0)


def check_video_target(tracking: Tracking | None, video: str | None, run_dir: Path) -> None:
    """evaluate.py's --track before any game is played: it needs --video and a run directory."""
    if tracking is None:
        return
    if not video:
        raise UserError("--track logs evaluate.py's --video to W&B: give --video FILE too.")
    if not (run_dir / "config.yaml").is_file():
        raise UserError(
            f"--track logs the video to the W&B run of {run_dir}: it has no config.yaml."
        )


def log_video(tracking: Tracking, run_dir: Path, video: Path, step: int) -> None:
    """evaluate.py --video --track: the video, at the checkpoint's step, in the W&B run of the
    run directory (resumed by its id; best left until train.py has finished that run)."""
    config = configs.from_dict(load_yaml(run_dir / "config.yaml", "Config"))
    mirror = WandbMirror.start(tracking, run_dir, config)
    mirror.video("eval/video", video, step)
    mirror.finish()
