"""The local backend: a pool of `workers` train.py processes, driven from the main thread (the
thread that forks a child must outlive it, see sweeps.process)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from configs.errors import UserError
from sweeps.backend import Observer, Outcome, StopRequest
from sweeps.plan import Job
from sweeps.process import spawn
from sweeps.state import Ledger, newest_step, sweep_dir

POLL_S = 0.2
LOCK_WAIT_S = 60.0


@dataclass
class Running:
    """A launched run: its job, process, open log and start time."""

    job: Job
    process: subprocess.Popen
    log: IO[bytes]
    start: float


def launch(job: Job, ledger: Ledger, keep_fds: tuple[int, ...]) -> Running:
    """Start one run (resuming it when it holds a checkpoint), recorded in the ledger."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    log = job.log.open("ab")
    step = newest_step(job.run_dir)
    log.write(f"# sweep: launch of {job.name} at step {step}, {time.ctime()}\n".encode())
    log.flush()
    process = spawn(list(job.argv), log, keep_fds=keep_fds)
    ledger.write("start", job.name, step=step, pid=process.pid)
    return Running(job, process, log, time.monotonic())


def reap(running: Running, ledger: Ledger) -> Outcome | None:
    """The outcome of a run whose process has exited, else None."""
    code = running.process.poll()
    if code is None:
        return None
    running.log.close()
    ledger.write("end", running.job.name, rc=code)
    return Outcome(running.job.name, code, time.monotonic() - running.start)


def run_local(
    jobs: list[Job],
    *,
    workers: int,
    ledger: Ledger,
    observer: Observer,
    stop: StopRequest,
    keep_fds: tuple[int, ...] = (),
) -> list[Outcome]:
    """Run `jobs` with at most `workers` at once; a failed run does not stop the others. On a stop
    request no run is started and the request is forwarded to those running."""
    queue, running, outcomes, forwarded = deque(jobs), [], [], 0
    while running or (queue and not stop.count):
        while queue and len(running) < workers and not stop.count:
            job = queue.popleft()
            running.append(launch(job, ledger, keep_fds))
            observer.started(job, newest_step(job.run_dir))
        if stop.count > forwarded:
            for run in running:
                run.process.send_signal(stop.signum)
            forwarded = stop.count
        for run in list(running):
            outcome = reap(run, ledger)
            if outcome is not None:
                running.remove(run)
                outcomes.append(outcome)
                observer.ended(run.job, outcome)
        observer.tick()
        time.sleep(POLL_S)
    return outcomes


def lock(logdir: Path, *, on_wait: Callable[[Path], None]) -> int:
    """An exclusive lock on the --logdir's sweep folder, held by the launcher and its runs (the
    fd is passed on), so a rerun waits for the runs of a killed launcher to checkpoint."""
    sweep_dir(logdir).mkdir(parents=True, exist_ok=True)
    fd = os.open(sweep_dir(logdir) / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline, said = time.monotonic() + LOCK_WAIT_S, False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise UserError(
                    f"Another sweep (or the runs of one) is using {logdir}; wait for it to end "
                    "or stop it, then rerun."
                ) from None
            if not said:
                on_wait(logdir)
                said = True
            time.sleep(0.5)
