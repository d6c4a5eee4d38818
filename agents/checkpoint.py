"""Checkpoints: written atomically (temp file, fsync, rename), the last few kept, read back as data
with `torch.load(weights_only=True)`. A crash or kill mid-write never leaves a partial file as the
latest: readers only see `ckpt_<step>.pt` names, which appear whole through the rename. A full
disk, a NaN in the state or a pickled object is refused with a UserError naming the file, and a
resume falls back past an unreadable newest checkpoint to the previous good one."""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from configs.errors import UserError

NAME = re.compile(r"^ckpt_(\d{12})\.pt$")
TEMP_PREFIX, TEMP_SUFFIX = ".ckpt-", ".tmp"
CODE = re.compile(r"Unsupported global: GLOBAL (\S+)")
UNPICKLER = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (disk full, file too large, permissions)."""


class NonFiniteError(UserError):
    """Training diverged: a loss or a parameter is NaN or infinite; nothing non-finite is saved."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / f"ckpt_{step:012d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if NAME.match(p.name))


def save_checkpoint(run_dir: Path, step: int, state: dict, *, keep: int) -> Path:
    """Write `state` as ckpt_<step>.pt atomically, then delete all but the newest `keep`.

    Temp files a killed writer left behind are removed first (one process writes a run directory).
    Checkpoints of later steps are removed after the write: they belong to a stretch of the run
    that a resume passed over (an unreadable checkpoint) and is now redoing, and would otherwise
    be taken as the newest, and count against `keep`."""
    for stale in run_dir.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
    path = checkpoint_path(run_dir, step)
    write_atomic(path, state)
    for newer in list_checkpoints(run_dir):
        if newer.name > path.name:
            newer.unlink(missing_ok=True)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def write_atomic(path: Path, state: dict) -> None:
    """torch.save `state` to `path` via a temp file, fsync, rename and fsync of the directory:
    `path` is whole or absent, and the rename survives a power cut. The file gets the mode an
    ordinary `open` would (0666 less the umask), as config.yaml and the events do, not mkstemp's
    private 0600: collaborators on a shared filesystem can read it.

    Raises:
        NonFiniteError: a floating tensor in `state` holds NaN or Inf (nothing is written).
        CheckpointWriteError: the write failed (disk full, file too large); no file is left.
    """
    check_finite(state, path)
    state = own_storage(state)
    try:
        with stop_signals_held():  # a signal before tmp is named would leave that file behind
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
            file = WriteRecorder(os.fdopen(fd, "wb"))
    except OSError as error:
        raise write_error(path, error) from None
    except BaseException:  # the held signal, delivered as the block ended
        file.file.close()
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with file.file:
            torch.save(state, file)
            file.file.flush()
            os.fsync(file.file.fileno())
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        cause = file.error or error  # torch reports a failed write as "unexpected pos"
        if isinstance(cause, OSError):
            raise write_error(path, cause) from None
        raise


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held pending (not lost) for the block, then delivered as it ends."""
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def own_storage(tree: Any) -> Any:
    """`tree` with every tensor that is a view into a larger storage replaced by a copy of
    itself: torch.save writes a view's whole storage, and a seed's parameters in a many-seed run
    are views of stacks holding every seed (networks.stacked)."""
    if isinstance(tree, torch.Tensor):
        whole = tree.untyped_storage().nbytes()
        return tree.clone() if whole > tree.numel() * tree.element_size() else tree
    if isinstance(tree, dict):
        return {key: own_storage(value) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(own_storage(value) for value in tree)
    return tree


def current_umask() -> int:
    """The process's umask (reading it means setting it: it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_directory(folder: Path) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteRecorder:
    """A binary file that remembers the OSError of a failed write: torch.save replaces it with an
    uninformative RuntimeError ("unexpected pos"), and the user needs "No space left on device"."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def write_error(path: Path, cause: BaseException) -> CheckpointWriteError:
    reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
    return CheckpointWriteError(
        f"Cannot write checkpoint {path}: {reason}. Nothing was written under that name and the "
        "previous checkpoints are intact; free some space (or raise the file-size limit) and "
        "resume the run."
    )


def tensors(tree: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted key, tensor) for every tensor in nested dicts and lists."""
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, list | tuple):
        for index, value in enumerate(tree):
            yield from tensors(value, f"{prefix}.{index}")


def first_nonfinite(state: dict) -> tuple[str, float] | None:
    """(key, value) of the first NaN or Inf in a floating tensor or float of `state`, else None."""
    for key, tensor in tensors(state):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = tensor[~torch.isfinite(tensor)].flatten()[0]
            return key, float(bad)
    for key, value in flat_floats(state):
        if not math.isfinite(value):
            return key, value
    return None


def flat_floats(tree: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(tree, float):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from flat_floats(value, f"{prefix}.{key}" if prefix else str(key))


def check_finite(state: dict, path: Path) -> None:
    """Refuse to save a diverged network: a checkpoint holding NaN would be resumed into NaN."""
    found = first_nonfinite(state)
    if found:
        key, value = found
        raise NonFiniteError(
            f"Refusing to write checkpoint {path}: {key} is {value} (training diverged); "
            "the previous checkpoints are kept."
        )


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


def load_latest(
    run_dir: Path, *, on_skip: Callable[[Path, str], None] | None = None
) -> tuple[Path, dict]:
    """The newest checkpoint of `run_dir` that reads back whole, trying newest to oldest: a node
    that died mid-fsync, or a disk that went bad, costs one checkpoint interval, not the run.

    Args:
        on_skip: called with (file, reason) for each unreadable checkpoint passed over.

    Raises:
        UserError: the directory is missing, holds no checkpoint, or none of them reads back.
    """
    find_checkpoint(run_dir)  # the clear errors for a missing or empty directory
    failures = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path)
        except UserError as error:
            failures.append(str(error))
            if on_skip:
                on_skip(path, str(error))
    raise UserError(f"Run directory {run_dir} holds no readable checkpoint: " + " ".join(failures))


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint as data (never code); a UserError names the file and why it failed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"Checkpoint {path} does not exist.") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise UserError(read_error(path, error)) from None
    if not isinstance(state, dict) or not {"step", "config", "agent"} <= state.keys():
        raise UserError(
            f"Checkpoint {path} is a torch file but not a plasticity-suite checkpoint "
            "(it lacks the step, config and agent entries)."
        )
    found = first_nonfinite(state.get("agent", {}))
    if found:
        raise UserError(f"Checkpoint {path} could not be read: agent.{found[0]} is {found[1]}.")
    return state


def read_error(path: Path, error: Exception) -> str:
    """Why `path` failed to load, in one sentence: pickled code is named as such."""
    code = CODE.search(str(error))
    if code:
        return (
            f"Checkpoint {path} could not be read: it holds pickled code or objects "
            f"({code.group(1)}), refused unread; a checkpoint is data, never code."
        )
    # torch's first line for bytes it cannot unpickle advises weights_only=False: not for us.
    detail = UNPICKLER.search(str(error))
    reason = detail.group(1) if detail else (str(error).splitlines() or [type(error).__name__])[0]
    return (
        f"Checkpoint {path} could not be read as a plasticity-suite checkpoint "
        f"(corrupt, truncated or not a torch file): {reason}"
    )
