"""What every backend shares: a process's outcome, the observer it reports to, the ledger records
of its runs, the stop request."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Protocol

from sweeps.pack import Pack
from sweeps.state import STOPPED, Ledger


@dataclass(frozen=True)
class Outcome:
    """How one launch of a pack's process ended; its exit status is each of its runs'."""

    name: str
    returncode: int
    seconds: float
    error: str = ""
    """What the backend itself saw go wrong (a lost Ray task), beside the process's own log."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def stopped(self) -> bool:
        """Stopped by a signal after its checkpoint: resumable, not an error."""
        return self.returncode != 0 and self.returncode in STOPPED


class Observer(Protocol):
    """Told what the backend does; the command line shows it."""

    def started(self, pack: Pack, steps: list[int]) -> None: ...

    def ended(self, pack: Pack, outcome: Outcome) -> None: ...

    def tick(self) -> None: ...


def record_start(ledger: Ledger, pack: Pack, steps: list[int], **fields: object) -> None:
    """One start record per run of the pack, at its step, naming the log its runs share."""
    for job, step in zip(pack.jobs, steps, strict=True):
        ledger.write("start", job.name, step=step, log=pack.log.name, **fields)


def record_end(ledger: Ledger, pack: Pack, outcome: Outcome, **fields: object) -> None:
    """One end record per run of the pack: the process's exit status is each run's."""
    for job in pack.jobs:
        ledger.write("end", job.name, rc=outcome.returncode, **fields)


class StopRequest:
    """Ctrl-C / SIGTERM seen by the launcher: the first stops new launches and is forwarded to the
    running runs (they checkpoint and exit); a second is forwarded too (they exit at once)."""

    def __init__(self) -> None:
        self.count, self.signum = 0, int(signal.SIGTERM)

    def __call__(self, signum: int, _frame: object = None) -> None:
        self.count, self.signum = self.count + 1, signum

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)
