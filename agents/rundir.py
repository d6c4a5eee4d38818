"""A run directory's ownership and its budget: one process writes a run directory at a time,
wherever it runs (a lock in it), nothing a run wrote is deleted (a restart from scratch
sets the earlier attempt aside), and config.yaml always holds the config of the run's latest
launch, so its `train.total_steps` is the budget that `report.py` and `sweep.py` read beside
the newest checkpoint's step."""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from agents.checkpoint import NAME as CHECKPOINT_NAME
from agents.checkpoint import current_umask, fsync_directory, list_checkpoints, stop_signals_held
from configs.errors import UserError

LOCK = ".lock"
"""The lock file inside a run directory; it names the process that holds it."""
ASIDE = Path(".sweep") / "aside"
"""Where, under --logdir, a restart from scratch moves what an earlier attempt wrote."""
LOCK_WAIT_S = 900.0
"""How long a launch waits for the process that holds its run directory (a killed worker's
train.py writing its final checkpoint) before giving up."""
POLL_S = 0.2


def newest_step(run_dir: Path) -> int:
    """The step of the run's newest `ckpt_<step>.pt`: its progress (0 when it has none)."""
    newest = list_checkpoints(run_dir)
    return int(CHECKPOINT_NAME.match(newest[-1].name).group(1)) if newest else 0


def hold(run_dir: Path, *, create: bool = False, wait_s: float = LOCK_WAIT_S) -> int:
    """Take the exclusive lock of a run directory (its `.lock` file; `create`: making the
    directory if there is none) for the rest of this process: the fd is returned and kept
    open, and the kernel drops the lock when the process exits, however it exits. A launch
    that finds it held says once who holds it and waits, so a retried Ray task resumes only
    after the first attempt has written its final checkpoint. If the holder removed the
    directory meanwhile (a launch that failed before training), the lock of the new one under
    the same name is taken instead."""
    deadline, said = time.monotonic() + wait_s, False
    while True:
        path = run_dir / LOCK
        try:
            if create:
                run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        except FileNotFoundError:
            if not create:
                raise UserError(f"Run directory {run_dir} does not exist.") from None
            continue  # removed between mkdir and open by a launch that failed: make it again
        except OSError as error:
            raise UserError(f"Cannot create the run lock {path}: {error.strerror}.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if time.monotonic() > deadline:
                raise UserError(
                    f"{run_dir} is being written by {holder} and was still locked after "
                    f"{wait_s:.0f} s; stop that process or wait for it, then rerun."
                ) from None
            if not said:
                print(f"waiting for {holder}, which is writing {run_dir}", file=sys.stderr)
                said = True
            try:
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                raise UserError(
                    f"interrupted while waiting for {holder}, which is writing {run_dir}; "
                    "nothing was started."
                ) from None
            continue
        if still_named(path, fd):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
            return fd
        os.close(fd)  # removed while we waited (a launch that failed): lock the new one


def still_named(path: Path, fd: int) -> bool:
    """Whether `path` is still the file open as `fd` (not moved away with its directory)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def holds_anything(run_dir: Path) -> bool:
    """Whether the directory holds more than its lock."""
    return any(p.name != LOCK for p in run_dir.iterdir())


def set_aside(run_dir: Path) -> Path:
    """Move what a run directory holds, but its lock, to LOGDIR/.sweep/aside/<name>-<k>, so that
    the run can start again under its name and nothing the earlier attempt wrote (events,
    best.pt, its config) is lost. For a directory that holds no checkpoint (a run that diverged,
    failed or was killed before its first one); the caller holds its lock, which stays in place
    (the directory never leaves its path, so no other launch can take the name meanwhile)."""
    folder = run_dir.parent / ASIDE
    folder.mkdir(parents=True, exist_ok=True)
    index = 1 + sum(1 for p in folder.glob(f"{run_dir.name}-*") if p.is_dir())
    while True:
        target = folder / f"{run_dir.name}-{index}"
        try:
            target.mkdir()
            break
        except FileExistsError:
            index += 1
    for entry in run_dir.iterdir():
        if entry.name != LOCK:
            entry.rename(target / entry.name)
    return target


def set_aside_runs(logdir: Path) -> list[Path]:
    """The run directories set aside under `logdir`, sorted."""
    folder = logdir / ASIDE
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def write_config(run_dir: Path, config: dict) -> None:
    """config.yaml of this launch, written atomically (temp file, fsync, rename): a reader sees
    the old budget or the new one, never half a file."""
    write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))


def write_text(path: Path, text: str) -> None:
    """`text` written to `path` atomically (temp file, fsync, rename), with an ordinary file's
    mode."""
    tmp = None
    try:
        with stop_signals_held():  # a signal before tmp is named would leave that file behind
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
