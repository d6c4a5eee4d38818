"""The sweep's progress: runs done, running, pending and failed, aggregate steps/s and an ETA.

Steps of a running run are read from its newest TensorBoard event file, incrementally (each poll
reads only what was appended since the last)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sweeps.plan import Job
from sweeps.state import event_files, newest_step


class StepReader:
    """The newest step a run has logged in its newest event file, read as the file grows."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.path, self.loader, self.step = run_dir, None, None, 0

    def read(self) -> int:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

        files = event_files(self.run_dir)
        if files and files[-1] != self.path:
            self.path, self.loader = files[-1], EventFileLoader(str(files[-1]))
        if self.loader is not None:
            for event in self.loader.Load():
                self.step = max(self.step, int(event.step))
        return self.step


@dataclass(frozen=True)
class Snapshot:
    """The sweep at one moment."""

    done: int
    running: int
    pending: int
    failed: int
    steps_per_s: float
    eta_s: float | None


class Progress:
    """Tracks which runs are running or finished and how many steps they have taken."""

    def __init__(self, jobs: list[Job], *, clock: float | None = None) -> None:
        self.jobs = {job.name: job for job in jobs}
        self.start_step = {job.name: newest_step(job.run_dir) for job in jobs}
        self.readers: dict[str, StepReader] = {}
        self.finished: dict[str, bool] = {}
        self.started_at = time.monotonic() if clock is None else clock

    def started(self, name: str) -> None:
        self.readers[name] = StepReader(self.jobs[name].run_dir)

    def ended(self, name: str, *, ok: bool) -> None:
        self.readers.pop(name, None)
        self.finished[name] = ok

    def stopped(self, name: str) -> None:
        """A run stopped by a signal after its checkpoint: pending again, not failed."""
        self.readers.pop(name, None)

    def steps(self, name: str) -> int:
        job = self.jobs[name]
        if name in self.finished:
            return max(newest_step(job.run_dir), self.start_step[name])
        live = self.readers[name].read() if name in self.readers else 0
        return min(job.total, max(live, self.start_step[name]))

    def snapshot(self, now: float | None = None) -> Snapshot:
        now = time.monotonic() if now is None else now
        steps = {name: self.steps(name) for name in self.jobs}
        gained = sum(steps[n] - self.start_step[n] for n in self.jobs)
        elapsed = max(now - self.started_at, 1e-9)
        rate = max(gained, 0) / elapsed
        left = sum(
            max(self.jobs[n].total - steps[n], 0) for n in self.jobs if n not in self.finished
        )
        failed = sum(not ok for ok in self.finished.values())
        done = len(self.finished) - failed
        running = len(self.readers)
        return Snapshot(
            done=done,
            running=running,
            pending=len(self.jobs) - done - failed - running,
            failed=failed,
            steps_per_s=rate,
            eta_s=left / rate if rate > 0 else None,
        )


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def format_line(s: Snapshot) -> str:
    """One line: `sweep: 3 done, 2 running, 3 pending, 0 failed | 1,234 steps/s | ETA 0:02:31`."""
    return (
        f"sweep: {s.done} done, {s.running} running, {s.pending} pending, {s.failed} failed | "
        f"{s.steps_per_s:,.0f} steps/s | ETA {format_eta(s.eta_s)}"
    )
