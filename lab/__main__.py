"""The paper's synthetic nonstationary problems in CPU minutes (Lyle et al. 2024).

    python -m lab list
    python -m lab offset --variants dqn,ln+wd,hl_gauss --seeds 1-10
    python -m lab labels --quick --json labels.json
    python -m lab swiss_cheese

A variant means what it means to train.py (`ln+wd+hl_gauss`: the same network, optimiser and value
loss), laid over the `lab` preset. Each (variant, seed) is one run directory of TensorBoard events
under --logdir/EXPERIMENT/<time>/; the table printed at the end gives, over seeds, the mean
accuracy ± the half-width of its 95% Student-t interval, and the geometric mean of loss ratios and
losses with the 95% Student-t interval of their logs (lab/stats.py), as the README quotes them.
--json FILE writes {"experiment", "metric", "higher_is_worse", "results":
{variant: [one value per seed]}} for the experiment's headline condition (offset: offset 100;
labels: abrupt), and "conditions": {variant: {condition: [values]}} for all of them. For
swiss_cheese, "results" is {variant: {condition: [values]}}, and "metric" and "higher_is_worse"
are given per condition.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import configs
from configs import UserError
from lab.data import atari_frames
from lab.experiments import EXPERIMENTS, FULL, QUICK, VARIANTS, Condition, Job, run_job
from lab.stats import LEGEND, format_cell
from sweeps.grid import parse_seeds, split_list

RESET_INTERVAL = "interventions.reset_head.interval"
"""The one key the lab sets itself (`on_task_clock`), so that --set cannot."""

FRAME_SIDE = 16
"""Frames are pooled from 84x84 to 16x16: 256 inputs to the MLP."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", help=f"list, or one of: {', '.join(EXPERIMENTS)}")
    p.add_argument("--variants", help="variants joined by commas (default: the experiment's list)")
    p.add_argument("--seeds", default="1-10", help="e.g. 1,2,3 or 1-5 (default 1-10)")
    p.add_argument("--quick", action="store_true", help="the test-sized version (under a minute)")
    p.add_argument("--logdir", default="runs/lab", help="where run directories go (runs/lab)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key for every variant, e.g. --set agent.lr=3e-4",
    )
    p.add_argument(
        "--workers", type=int, help="runs at once, one thread each (default: the CPU count)"
    )
    return p.parse_args(argv)


def list_experiments() -> str:
    lines = []
    for name, experiment in EXPERIMENTS.items():
        conditions = ", ".join(c.name for c in experiment.conditions(FULL))
        lines += [
            f"{name}: {experiment.summary}",
            f"    conditions: {conditions}",
            f"    default variants: {','.join(VARIANTS[name])}",
        ]
    return "\n".join(lines)


def plan(args: argparse.Namespace) -> tuple[list[Job], int]:
    """The runs to make, each checked before anything starts, and how many run at once."""
    if args.experiment not in EXPERIMENTS:
        known = ", ".join(["list", *EXPERIMENTS])
        raise UserError(f"Unknown experiment '{args.experiment}'. Known: {known}.")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers} must be at least 1.")
    variants = (
        split_list(args.variants, "--variants") if args.variants else VARIANTS[args.experiment]
    )
    seeds = parse_seeds(args.seeds)
    size = QUICK if args.quick else FULL
    resolved = {v: configs.resolve(preset="lab", variant=v, assignments=args.set) for v in variants}
    for variant, config in resolved.items():  # however --set spells it (a key, a section)
        unset = configs.resolve(preset="lab", variant=variant).interventions.reset_head.interval
        if config.interventions.reset_head.interval != unset:
            raise UserError(
                f"--set of {RESET_INTERVAL}: the lab resets the head once per change of targets "
                "(lab.experiments.on_task_clock), whatever the interval."
            )
    env = next(iter(resolved.values())).env
    inputs = atari_frames(size.inputs, side=FRAME_SIDE, seed=0, env=env).flatten(1)
    root = Path(args.logdir) / args.experiment / time.strftime("%Y%m%d-%H%M%S")
    jobs = [
        (args.experiment, resolved[v], inputs, size, seed, root / f"{v}__s{seed}")
        for v in variants
        for seed in seeds
    ]
    return jobs, min(args.workers or os.cpu_count() or 1, len(jobs))


def run_all(jobs: list[Job], workers: int) -> list[dict[str, float]]:
    """Every job's results, in order: in this process for one worker, else in spawned processes
    (forking after torch's thread pools have started can hang a child)."""
    if workers == 1:
        return [run_job(job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(run_job, jobs))


def collect(jobs: list[Job], results: list[dict[str, float]]) -> dict[str, dict[str, list[float]]]:
    """{variant: {condition: [one value per seed]}}."""
    table: dict[str, dict[str, list[float]]] = {}
    for (_, config, *_), values in zip(jobs, results, strict=True):
        row = table.setdefault(config.variant, {})
        for condition, value in values.items():
            row.setdefault(condition, []).append(value)
    return table


def format_table(table: dict[str, dict[str, list[float]]], conditions: list[Condition]) -> str:
    """Each variant's cell per condition (`lab.stats.format_cell`), and what the cells mean."""
    header = ["variant"] + [f"{c.name} ({c.metric}, {'↓' if c.higher_is_worse else '↑'})"
                            for c in conditions]  # fmt: skip
    rows = [header]
    for variant, row in table.items():
        cells = [format_cell(row[c.name], log_scale=c.log_scale) for c in conditions]
        rows.append([variant, *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([*lines, LEGEND])


def as_json(name: str, table: dict, conditions: list[Condition]) -> dict:
    headline = EXPERIMENTS[name].headline
    if headline is None:
        return {
            "experiment": name,
            "metric": {c.name: c.metric for c in conditions},
            "higher_is_worse": {c.name: c.higher_is_worse for c in conditions},
            "results": table,
        }
    (condition,) = (c for c in conditions if c.name == headline)
    return {
        "experiment": name,
        "metric": f"{condition.metric} ({condition.name})",
        "higher_is_worse": condition.higher_is_worse,
        "results": {variant: row[headline] for variant, row in table.items()},
        "conditions": table,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.experiment == "list":
        print(list_experiments())
        return 0
    try:
        jobs, workers = plan(args)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: --json {args.json} cannot be written: {error}", file=sys.stderr)
        return 2
    conditions = EXPERIMENTS[args.experiment].conditions(jobs[0][3])
    print(f"{len(jobs)} runs, {workers} at a time, under {jobs[0][5].parent}/", flush=True)
    try:
        table = collect(jobs, run_all(jobs, workers))
    except KeyboardInterrupt:
        print("interrupted: the runs' TensorBoard events so far are kept", file=sys.stderr)
        return 130
    if args.json:  # before the table: nothing the runs measured is lost to a formatting error
        Path(args.json).write_text(
            json.dumps(as_json(args.experiment, table, conditions), indent=1)
        )
    print(format_table(table, conditions))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
