"""Run a grid of train.py runs (games x variants x seeds), locally or on a Ray cluster.

    python sweep.py --grid plasticity --envs Pong,Breakout --seeds 1,2,3
    python sweep.py --variants dqn,ln+wd --envs CartPole-v1 --seeds 1-5 --preset classic
    python sweep.py --grid plasticity --envs Pong --seeds 1,2,3 --status
    python sweep.py --variants dqn --envs MinAtar/Breakout --seeds 1-8 --seeds-per-process 4

Every run is an ordinary train.py run named game__variant__sSEED under --logdir, so rerunning the
same command skips finished runs, resumes half-done ones from their checkpoint and starts the
rest. With --seeds-per-process K, the unfinished seeds of one (game, variant) train K at a time
in one process (train.py --seeds), each still its own run. Ctrl-C or SIGTERM is passed to the
running runs, which checkpoint and stop.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import configs
from configs import UserError
from sweeps.backend import Outcome, StopRequest
from sweeps.grid import Options, command_line, expand, grid_variants, parse_seeds, split_list
from sweeps.local import lock, run_local
from sweeps.pack import Pack, make_packs
from sweeps.plan import Job, make_jobs, states, user_sets_threads
from sweeps.process import tail
from sweeps.progress import Progress, format_line
from sweeps.state import Ledger, RunState, aside_lines, status_table
from training.tracking import Tracking, add_flags, track_argv


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--grid", help="a grid in configs/grids/ (e.g. plasticity) or a YAML file")
    which.add_argument("--variants", help="variants joined by commas, e.g. dqn,ln+wd")
    p.add_argument("--envs", required=True, help="games or env ids joined by commas")
    p.add_argument("--seeds", default="1", help="seeds: 1,2,3 or 1-3 (default 1)")
    p.add_argument("--preset", help=f"budget/protocol: {', '.join(configs.available('presets'))}")
    p.add_argument("--config", help="a YAML file of config keys laid over the preset")
    p.add_argument("--total-steps", type=int, help="environment steps of every run")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key in every run (repeatable)",
    )
    p.add_argument("--logdir", default="runs", help="folder of the run directories (default runs)")
    p.add_argument(
        "--workers",
        type=int,
        help="local train.py processes at once (default: one per core, torch threads shared out)",
    )
    p.add_argument(
        "--seeds-per-process",
        default="1",
        metavar="K",
        help="train up to K seeds of one (game, variant) in one process, batched; each is still "
        "its own run (default 1: a process per run)",
    )
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument(
        "--address",
        help="Ray cluster address, 'auto' or 'local' (default: the one "
        "`ray start` made, else a new local one)",
    )
    p.add_argument(
        "--cpus-per-run",
        type=float,
        default=1.0,
        help="Ray CPUs per process, whatever its seeds (default 1)",
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        help="Ray GPUs per process, fractions allowed (default 0)",
    )
    p.add_argument("--max-retries", type=int, default=3, help="Ray retries on node loss")
    p.add_argument("--dry-run", action="store_true", help="print the runs it would start")
    p.add_argument("--status", action="store_true", help="print each run's state and exit")
    add_flags(p)  # passed on to every run
    return p.parse_args(argv)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def check_numbers(args: argparse.Namespace) -> None:
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers} must be at least 1.")
    if args.cpus_per_run <= 0 or args.gpus_per_run < 0 or args.max_retries < 0:
        raise UserError("--cpus-per-run must be > 0, --gpus-per-run and --max-retries >= 0.")


def per_process(text: str) -> int:
    """--seeds-per-process as a number of seeds, or a UserError naming what it takes."""
    seeds = int(text) if text.strip().isdecimal() else 0
    if seeds < 1:
        raise UserError(
            f"--seeds-per-process {text}: give a whole number of seeds, 1 or more (1, the "
            "default, trains each run in a process of its own)."
        )
    return seeds


def workers_and_threads(args: argparse.Namespace, options: Options) -> tuple[int, int | None]:
    """Local processes at once and each one's torch threads (None: the user set
    train.threads)."""
    if args.backend == "ray":
        return 0, max(1, math.ceil(args.cpus_per_run))
    if user_sets_threads(options):
        threads = int(configs.resolve(assignments=list(options.sets)).train.threads) or 1
        return args.workers or max(1, cores() // threads), None
    workers = args.workers or cores()
    return workers, max(1, cores() // workers)


@dataclass(frozen=True)
class Plan:
    """What the flags resolve to, before anything runs."""

    jobs: list[Job]
    options: Options
    workers: int
    """Local processes at once (0 on Ray)."""
    per_process: int
    """The most seeds of one (game, variant) that one train.py process trains."""

    def run_states(self, *, returns: bool = False) -> list[RunState]:
        """Each job's state now, from its run directory and the ledger (and its last return)."""
        return states(self.jobs, Ledger(self.options.logdir).last_exit(), returns=returns)

    def packs(self) -> list[Pack]:
        """The processes that would run every job not done now."""
        found = self.run_states()
        todo = [job for job, s in zip(self.jobs, found, strict=True) if s.state != "done"]
        return make_packs(todo, self.options, self.per_process)


def plan(args: argparse.Namespace) -> Plan:
    """Every run's Job, all configs resolved (bad input is a UserError before anything runs)."""
    check_numbers(args)
    seeds = per_process(args.seeds_per_process)
    variants = (
        split_list(args.variants, "--variants") if args.variants else grid_variants(args.grid)
    )
    runs = expand(split_list(args.envs, "--envs"), variants, parse_seeds(args.seeds))
    Tracking.from_args(args)  # a missing [wandb] extra before any run starts
    options = Options(
        Path(args.logdir),
        args.preset,
        args.config,
        args.total_steps,
        tuple(args.set),
        tracking=track_argv(args),
    )
    workers, threads = workers_and_threads(args, options)
    return Plan(make_jobs(runs, options, threads=threads), options, workers, seeds)


class Console:
    """The sweep's voice on stderr: one line per process's start and end, and a progress line
    that counts runs."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.tty = progress, sys.stderr.isatty()
        self.every, self.last = (1.0 if self.tty else 15.0), time.monotonic()

    def say(self, text: str) -> None:
        print(("\r\033[K" if self.tty else "") + text, file=sys.stderr, flush=True)

    def started(self, pack: Pack, steps: list[int]) -> None:
        for job in pack.jobs:
            self.progress.started(job.name)
        self.say(f"start {pack.name}" + resuming(pack, steps))

    def ended(self, pack: Pack, outcome: Outcome) -> None:
        for job in pack.jobs:
            if outcome.stopped:
                self.progress.stopped(job.name)
            else:
                self.progress.ended(job.name, ok=outcome.ok)
        if outcome.ok:
            self.say(f"done  {pack.name} in {outcome.seconds:.1f} s")
        elif outcome.stopped:
            self.say(f"stopped {pack.name} (checkpointed; a rerun resumes it)")
        else:
            lines = "\n".join(f"    {line}" for line in tail(pack.log).splitlines())
            why = f" {outcome.error}" if outcome.error else ""
            self.say(
                f"FAILED {pack.name} (exit {outcome.returncode}){why}; end of {pack.log}:\n{lines}"
            )

    def tick(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            line = format_line(self.progress.snapshot())
            print(
                ("\r\033[K" + line) if self.tty else line,
                end="" if self.tty else "\n",
                file=sys.stderr,
                flush=True,
            )


def resuming(pack: Pack, steps: list[int]) -> str:
    """' (resuming at step 1,000)' for one run; for several, each resumed run by name."""
    if len(steps) == 1:
        return f" (resuming at step {steps[0]:,})" if steps[0] else ""
    resumed = [f"{j.name} at step {s:,}" for j, s in zip(pack.jobs, steps, strict=True) if s]
    return f" (resuming {', '.join(resumed)})" if resumed else ""


def waiting(logdir: Path) -> None:
    print(f"waiting for another sweep's runs in {logdir} to stop...", file=sys.stderr)


def execute(
    args: argparse.Namespace, packs: list[Pack], workers: int, stop: StopRequest, lock_fd: int
) -> None:
    """Run the packs on the chosen backend, reporting to a Console; local runs hold the lock."""
    jobs = [job for pack in packs for job in pack.jobs]
    ledger, console = Ledger(Path(args.logdir)), Console(Progress(jobs))
    if args.backend == "ray":
        from sweeps.ray_backend import RayOptions, connect, require_ray, run_ray

        options = RayOptions(args.address, args.cpus_per_run, args.gpus_per_run, args.max_retries)
        info = connect(options)
        stop.install()  # ray.init installs its own SIGTERM handler in the driver
        print(f"ray: connected in {info['seconds']:.1f} s", file=sys.stderr)
        try:
            run_ray(packs, options=options, ledger=ledger, observer=console, stop=stop)
        finally:
            require_ray().shutdown()
            if info["temp_dir"]:
                shutil.rmtree(info["temp_dir"], ignore_errors=True)
    else:
        run_local(
            packs, workers=workers, ledger=ledger, observer=console, stop=stop, keep_fds=(lock_fd,)
        )
    console.tick(force=True)
    if console.tty:
        print(file=sys.stderr)


def launch(args: argparse.Namespace, planned: Plan) -> int:
    """Run every job not yet done; 0 when all are done afterwards. The --logdir is locked first,
    so the runs of a killed launcher finish their last checkpoint before states are read."""
    fd, jobs = lock(Path(args.logdir), on_wait=waiting), planned.jobs
    packs = planned.packs()
    todo = sum(len(pack.jobs) for pack in packs)
    print(
        f"sweep: {len(jobs)} runs, {len(jobs) - todo} already done, {todo} to run in "
        f"{len(packs)} process{'' if len(packs) == 1 else 'es'}"
        + (f" ({planned.workers} at once)" if args.backend == "local" else " on Ray"),
        file=sys.stderr,
    )
    stop = StopRequest()
    stop.install()
    if packs:
        execute(args, packs, planned.workers, stop, fd)
    after = planned.run_states()
    counts = {state: sum(s.state == state for s in after) for state in ("done", "failed")}
    left = len(jobs) - counts["done"]
    print(
        f"sweep: {counts['done']}/{len(jobs)} done, {counts['failed']} failed, {left} not "
        f"finished; compare them: python report.py {args.logdir}",
        file=sys.stderr,
    )
    if stop.count:
        return 128 + stop.signum
    return 0 if left == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        planned = plan(args)
        if args.status:
            print(status_table(planned.run_states(returns=True)))
            for line in aside_lines(Path(args.logdir), {job.name for job in planned.jobs}):
                print(line)
            return 0
        if args.dry_run:
            for pack in planned.packs():
                print(command_line(list(pack.argv)))
            return 0
        if args.backend == "ray":
            from sweeps.ray_backend import require_ray

            require_ray()
        return launch(args, planned)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
