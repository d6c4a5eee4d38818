"""Packing runs into train.py processes: the runs a launch still has to do, the seeds of one
(game, variant) together, at most K a process (train.py --seeds), so that K seeds share one
process's batched acting and updates. A run stays the unit of everything else (the ledger,
progress, --status, the report); a pack only says where its runs execute, and its log is theirs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweeps.grid import Options, format_seeds, run_name, train_argv
from sweeps.plan import Job
from sweeps.state import log_path, newest_step


@dataclass(frozen=True)
class Pack:
    """The runs of one train.py process: one run, or seeds of one (game, variant) batched."""

    jobs: tuple[Job, ...]
    argv: tuple[str, ...]
    name: str
    """The run's own name, or `game__variant__sSEEDS` for several (`CartPole-v1__dqn__s1-5`)."""
    log: Path
    """The process's stdout and stderr, shared by its runs: LOGDIR/.sweep/NAME.log."""

    def steps(self) -> list[int]:
        """Each run's newest checkpointed step: where the process resumes it (0: from scratch)."""
        return [newest_step(job.run_dir) for job in self.jobs]


def make_pack(jobs: list[Job], options: Options) -> Pack:
    """The process of `jobs`, seeds of one command (game, variant and this launch's sets)."""
    first = jobs[0]
    name = run_name(first.run.game, first.run.variant, format_seeds([j.run.seed for j in jobs]))
    argv = train_argv([job.run for job in jobs], options, first.sets)
    return Pack(tuple(jobs), tuple(argv), name, log_path(options.logdir, name))


def make_packs(jobs: list[Job], options: Options, per_process: int) -> list[Pack]:
    """The processes that run `jobs`: those of one command in seed order, at most `per_process`
    a process. Processes are ordered by their earliest job, so a sweep stays seed-major (with
    `per_process` 1, the jobs' own order)."""
    order = {job.name: index for index, job in enumerate(jobs)}
    commands: dict[tuple, list[Job]] = {}
    for job in jobs:
        commands.setdefault((job.run.env, job.run.variant, job.sets), []).append(job)
    chunks = []
    for same in commands.values():
        same.sort(key=lambda job: job.run.seed)
        chunks += [same[i : i + per_process] for i in range(0, len(same), per_process)]
    chunks.sort(key=lambda chunk: min(order[job.name] for job in chunk))
    return [make_pack(chunk, options) for chunk in chunks]
