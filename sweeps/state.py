"""Run state, read from what a run directory holds and from the sweep's launch ledger.

A run is `done` when its newest checkpoint reached the sweep's total steps, `failed` when its last
launch ended in an error (not a stop signal), `partial` when it has a checkpoint short of the end,
and `pending` otherwise. The ledger (`LOGDIR/.sweep/launches.jsonl`, one JSON line per launch and
per end) is the witness that a finished run is never run again.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agents.rundir import newest_step, set_aside_runs

State = Literal["done", "partial", "pending", "failed"]
SWEEP_DIR = ".sweep"
RETURN_TAG = "charts/episodic_return"
STOPPED = {0, 128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM}
"""Exit statuses of a run that was not in error: finished, or stopped by a signal after its
checkpoint (train.py exits 128 + signal)."""


def sweep_dir(logdir: Path) -> Path:
    """The launcher's own folder under --logdir: the ledger, each run's log, the lock."""
    return logdir / SWEEP_DIR


def log_path(logdir: Path, name: str) -> Path:
    """Where a process's stdout and stderr go (outside the run directories train.py creates),
    named after its run or its pack of runs (sweeps.pack)."""
    return sweep_dir(logdir) / f"{name}.log"


def launch_line(names: list[str], steps: list[int]) -> str:
    """`a at step 0, b at step 1000`: where a launch finds each of its runs, for its log."""
    return ", ".join(f"{name} at step {step}" for name, step in zip(names, steps, strict=True))


@dataclass(frozen=True)
class RunState:
    """What a run directory says about one run."""

    name: str
    state: State
    step: int
    total: int
    last_return: float | None = None


class Ledger:
    """The append-only launch log of every sweep on a --logdir."""

    def __init__(self, logdir: Path) -> None:
        self.path = sweep_dir(logdir) / "launches.jsonl"

    def write(self, event: Literal["start", "end"], name: str, **fields: object) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"event": event, "run": name, "time": round(time.time(), 3), **fields}
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")

    def records(self) -> list[dict]:
        """Every record, oldest first (a torn last line, from a killed launcher, is skipped)."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def last_exit(self) -> dict[str, int]:
        """Each run's exit status at its last end record."""
        return {r["run"]: int(r["rc"]) for r in self.records() if r["event"] == "end"}

    def starts(self, name: str) -> list[dict]:
        """The start records of one run."""
        return [r for r in self.records() if r["event"] == "start" and r["run"] == name]


def run_state(run_dir: Path, total: int, last_exit: int | None) -> RunState:
    """The state of the run in `run_dir` against the sweep's `total` steps."""
    step = newest_step(run_dir)
    if step >= total:
        state: State = "done"
    elif last_exit is not None and last_exit not in STOPPED:
        state = "failed"
    else:
        state = "partial" if step > 0 else "pending"
    return RunState(name=run_dir.name, state=state, step=step, total=total)


def event_files(run_dir: Path) -> list[Path]:
    """The run's TensorBoard event files, oldest first (a resume writes a new one)."""
    if not run_dir.is_dir():
        return []
    return sorted(
        run_dir.glob("events.out.tfevents.*"), key=lambda p: (int(p.name.split(".")[3]), p.name)
    )


def last_scalar(path: Path, tag: str) -> tuple[int, float] | None:
    """(step, value) of the last `tag` in one event file, or None."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found = None
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.tag == tag:
                found = (event.step, scalar_value(value))
    return found


def scalar_value(value: object) -> float:
    """A scalar summary's value, stored as simple_value or as a rank-0 tensor."""
    if value.HasField("simple_value"):
        return float(value.simple_value)
    from tensorboard.util import tensor_util

    return float(tensor_util.make_ndarray(value.tensor))


def last_return(run_dir: Path) -> float | None:
    """The last `charts/episodic_return` logged, from the newest event file that holds one."""
    for path in reversed(event_files(run_dir)):
        found = last_scalar(path, RETURN_TAG)
        if found is not None:
            return found[1]
    return None


def logged_steps(run_dir: Path) -> int:
    """The newest step of any event the run logged (0 without events)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = event_files(run_dir)
    return max((int(e.step) for f in files for e in EventFileLoader(str(f)).Load()), default=0)


def aside_lines(logdir: Path, names: set[str]) -> list[str]:
    """One line per earlier attempt of these runs that a restart set aside (agents.rundir)."""
    found = [p for p in set_aside_runs(logdir) if p.name.rpartition("-")[0] in names]
    if not found:
        return []
    lines = ["set aside (restarted from scratch; kept, not resumed, not in the report):"]
    for path in found:
        lines.append(f"  {path.relative_to(logdir)}  steps logged: {logged_steps(path):,}")
    return lines


def status_table(found: list[RunState]) -> str:
    """run | state | steps done/total | last return."""
    width = max([len(s.name) for s in found] + [3])
    rows = [f"{'run':{width}s}  {'state':7s}  {'steps':>21s}  last return"]
    for s in found:
        score = "-" if s.last_return is None else f"{s.last_return:g}"
        rows.append(f"{s.name:{width}s}  {s.state:7s}  {s.step:>10,d}/{s.total:<10,d}  {score}")
    return "\n".join(rows)
