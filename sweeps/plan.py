"""A sweep's plan: one Job per run, every config resolved (so checked) before anything runs.
Which process runs which jobs is sweeps.pack's part."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import configs
from agents.checkpoint import list_checkpoints
from configs import Config, UserError
from configs.load import changed_keys, load_yaml, unflatten
from sweeps.grid import Options, Run
from sweeps.state import RunState, last_return, run_state


@dataclass(frozen=True)
class Job:
    """One run, ready to execute: its directory, its budget, and the `--set`s this launch adds to
    the sweep's flags for it."""

    run: Run
    run_dir: Path
    total: int
    sets: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.run.name


def user_sets_threads(options: Options) -> bool:
    return any(a.partition("=")[0].strip() == "train.threads" for a in options.sets)


def saved_config(run_dir: Path) -> Config | None:
    """The config of a run that holds a checkpoint (what a rerun resumes), else None."""
    if not list_checkpoints(run_dir):
        return None
    return configs.from_dict(load_yaml(run_dir / "config.yaml", "Run config"))


def thread_sets(options: Options, config: Config, threads: int | None) -> tuple[str, ...]:
    """`--set train.threads=N` for a run of this launch: the user's own value wins, else a run
    gets at most its share of the cores as this launch divides them (a resumed run too: the key
    may change on resume, and a run started beside 15 others but resumed alone, or the other way
    round, must not keep a share that no longer fits). A config that asks for fewer (the classic
    preset's 1) keeps its value, since more threads than a small network needs slow it down
    badly on busy cores (a 2,000-step CartPole run measured 4x slower with 2 threads than with 1
    on 2 loaded cores)."""
    if user_sets_threads(options):
        return ()
    if threads is None or 0 < config.train.threads <= threads:
        return ()
    return (f"train.threads={threads}",)


def resolve(run: Run, options: Options, sets: tuple[str, ...]) -> Config:
    """The config train.py will resolve from this run's flags."""
    flags = {"env.id": run.env, "train.seed": run.seed, "train.total_steps": options.total_steps}
    return configs.resolve(
        preset=options.preset,
        config_file=options.config_file,
        variant=run.variant,
        overrides=unflatten({k: v for k, v in flags.items() if v is not None}),
        assignments=[*options.sets, *sets],
    )


def check_same_run(config: Config, saved: Config, run_dir: Path) -> None:
    """Refuse, up front, a run directory that train.py would refuse to resume under these flags."""
    changed = changed_keys(config, saved)
    if changed:
        raise UserError(
            f"{run_dir} holds a run whose config differs from this sweep's in "
            f"{', '.join(changed)}; sweep into another --logdir, or use the flags it was "
            "started with."
        )


def make_jobs(runs: list[Run], options: Options, *, threads: int | None) -> list[Job]:
    """Resolve every run's config (a UserError for the first bad one) and build its Job."""
    jobs = []
    for run in runs:
        run_dir = options.logdir / run.name
        saved = saved_config(run_dir)
        sets = thread_sets(options, resolve(run, options, ()), threads)
        config = resolve(run, options, sets)
        if saved is not None:
            check_same_run(config, saved, run_dir)
        jobs.append(Job(run, run_dir, config.train.total_steps, sets))
    return jobs


def states(jobs: list[Job], last_exit: dict[str, int], *, returns: bool = False) -> list[RunState]:
    """Each job's state (and its last logged return when `returns`)."""
    found = []
    for job in jobs:
        state = run_state(job.run_dir, job.total, last_exit.get(job.name))
        if returns:
            state = replace(state, last_return=last_return(job.run_dir))
        found.append(state)
    return found
