"""Checkpoints: written atomically (temp file, fsync, rename), the last few kept, read back as data
with `torch.load(weights_only=True)`. A crash or kill mid-write never leaves a partial file as the
latest: readers only see `ckpt_<step>.pt` names, which appear whole through the rename."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

from configs.errors import UserError

NAME = re.compile(r"^ckpt_(\d{12})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / f"ckpt_{step:012d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if NAME.match(p.name))


def save_checkpoint(run_dir: Path, step: int, state: dict, *, keep: int) -> Path:
    """Write `state` as ckpt_<step>.pt atomically, then delete all but the newest `keep`."""
    path = checkpoint_path(run_dir, step)
    write_atomic(path, state)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def write_atomic(path: Path, state: dict) -> None:
    """torch.save `state` to `path` through a temp file, fsync and rename: `path` is whole or absent."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ckpt-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_checkpoint(path: Path) -> Path:
    """A checkpoint file itself, or the newest checkpoint of a run directory."""
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"Checkpoint or run directory {path} does not exist.")
    found = list_checkpoints(path)
    if not found:
        raise UserError(f"Run directory {path} holds no checkpoint (ckpt_<step>.pt files).")
    return found[-1]


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint as data (never code); a UserError names the file and why it failed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"Checkpoint {path} does not exist.") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(
            f"Checkpoint {path} could not be read as a plasticity-suite checkpoint "
            f"(corrupt, truncated or not a torch file): {reason}"
        ) from None
    if not isinstance(state, dict) or not {"step", "config", "agent"} <= state.keys():
        raise UserError(
            f"Checkpoint {path} is a torch file but not a plasticity-suite checkpoint "
            "(it lacks the step, config and agent entries)."
        )
    return state
