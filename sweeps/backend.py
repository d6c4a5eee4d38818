"""What every backend shares: a run's outcome, the observer it reports to, the stop request."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Protocol

from sweeps.plan import Job
from sweeps.state import STOPPED


@dataclass(frozen=True)
class Outcome:
    """How one launch of a run ended."""

    name: str
    returncode: int
    seconds: float
    error: str = ""
    """What the backend itself saw go wrong (a lost Ray task), beside the run's own log."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def stopped(self) -> bool:
        """Stopped by a signal after its checkpoint: resumable, not an error."""
        return self.returncode != 0 and self.returncode in STOPPED


class Observer(Protocol):
    """Told what the backend does; the command line shows it."""

    def started(self, job: Job, step: int) -> None: ...

    def ended(self, job: Job, outcome: Outcome) -> None: ...

    def tick(self) -> None: ...


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
