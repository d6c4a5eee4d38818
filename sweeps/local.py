"""The local backend: a pool of `workers` train.py processes, one per pack of runs (sweeps.pack),
driven from the main thread (the thread that forks a child must outlive it, see sweeps.process)."""

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
from sweeps.backend import Observer, Outcome, StopRequest, record_end, record_start
from sweeps.pack import Pack
from sweeps.process import spawn
from sweeps.state import Ledger, launch_line, sweep_dir

POLL_S = 0.2
LOCK_WAIT_S = 60.0


@dataclass
class Running:
    """A launched pack: its process, open log, start time and each run's step at the start."""

    pack: Pack
    process: subprocess.Popen
    log: IO[bytes]
    start: float
    steps: list[int]


def launch(pack: Pack, ledger: Ledger, keep_fds: tuple[int, ...]) -> Running:
    """Start the process of a pack (resuming each run that holds a checkpoint), its runs
    recorded in the ledger."""
    pack.log.parent.mkdir(parents=True, exist_ok=True)
    log = pack.log.open("ab")
    steps = pack.steps()
    names = [job.name for job in pack.jobs]
    log.write(f"# sweep: launch of {launch_line(names, steps)}, {time.ctime()}\n".encode())
    log.flush()
    process = spawn(list(pack.argv), log, keep_fds=keep_fds)
    record_start(ledger, pack, steps, pid=process.pid)
    return Running(pack, process, log, time.monotonic(), steps)


def reap(running: Running, ledger: Ledger) -> Outcome | None:
    """The outcome of a pack whose process has exited, else None."""
    code = running.process.poll()
    if code is None:
        return None
    running.log.close()
    outcome = Outcome(running.pack.name, code, time.monotonic() - running.start)
    record_end(ledger, running.pack, outcome)
    return outcome


def run_local(
    packs: list[Pack],
    *,
    workers: int,
    ledger: Ledger,
    observer: Observer,
    stop: StopRequest,
    keep_fds: tuple[int, ...] = (),
) -> list[Outcome]:
    """Run `packs` with at most `workers` processes at once; a failed one does not stop the
    others. On a stop request no process is started and the request is forwarded to those
    running."""
    queue, running, outcomes, forwarded = deque(packs), [], [], 0
    while running or (queue and not stop.count):
        while queue and len(running) < workers and not stop.count:
            run = launch(queue.popleft(), ledger, keep_fds)
            running.append(run)
            observer.started(run.pack, run.steps)
        if stop.count > forwarded:
            for run in running:
                run.process.send_signal(stop.signum)
            forwarded = stop.count
        for run in list(running):
            outcome = reap(run, ledger)
            if outcome is not None:
                running.remove(run)
                outcomes.append(outcome)
                observer.ended(run.pack, outcome)
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
