"""From train.py's flags to the runs one process trains: one (config, run directory, checkpoint)
per seed. A new run, a `--run-name` rerun (resumed when it holds checkpoints), or `--resume` of a
run directory, which resumes every seed trained with it in one process. Each run directory's
lock (agents.rundir.hold) is held until the caller's ExitStack closes."""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import configs
from agents import list_checkpoints, resolve_device
from agents.checkpoint import load_latest
from agents.rundir import hold, holds_anything, set_aside, write_config
from configs import Config, UserError
from envs import make_env, resolve_env_id
from sweeps.grid import parse_seeds
from training.seed_run import run_replay

Launch = tuple[Config, Path, dict | None]
"""One seed's resolved config, its run directory, and the checkpoint to resume (None: new)."""

SEED_GROUP = "seed_group"
"""Checkpoint key: [{run: directory name, seed: seed}] of the seeds trained together in one
process (sibling directories under one --logdir)."""

SEED_FIELD = "{seed}"
"""Where a --run-name puts each seed's number when --seeds names several."""


def cli_overrides(args: argparse.Namespace) -> dict:
    flags = {
        "env.id": args.env,
        "train.seed": args.seed,
        "train.total_steps": args.total_steps,
        "train.device": args.device,
    }
    return configs.load.unflatten({k: v for k, v in flags.items() if v is not None})


def with_seed(config: Config, seed: int) -> Config:
    return replace(config, train=replace(config.train, seed=seed))


def new_runs(args: argparse.Namespace, owned: ExitStack) -> list[Launch]:
    """The runs the flags give, one per seed of --seeds (or the one --seed)."""
    if args.seeds is not None and args.seed is not None:
        raise UserError("--seeds and --seed were both given; give one (--seeds 1-8 or --seed 1).")
    config = configs.resolve(
        preset=args.preset,
        config_file=args.config,
        variant=args.variant,
        overrides=cli_overrides(args),
        assignments=args.set,
        on_override=lambda line: print(line, file=sys.stderr),
    )
    resolve_device(config.train.device)  # refuse a missing CUDA before anything is written
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [config.train.seed]
    if args.run_name and len(seeds) > 1 and SEED_FIELD not in args.run_name:
        raise UserError(
            f"--run-name {args.run_name!r} names one directory, but --seeds {args.seeds} trains "
            f"{len(seeds)} seeds: put {SEED_FIELD} in it (e.g. pong__dqn__s{SEED_FIELD}), which "
            "each seed's number replaces."
        )
    configs_by_seed = [with_seed(config, seed) for seed in seeds]
    check_seeds_combine(config, len(seeds))
    check_memory(configs_by_seed)
    return commit([new_run(c, args, owned) for c in configs_by_seed])


def new_run(config: Config, args: argparse.Namespace, owned: ExitStack) -> Launch:
    """One seed's run directory and the checkpoint to resume (None for a new run). A
    `--run-name` directory that holds checkpoints is resumed (a requeued job reruns the same
    command) if the flags agree; one that holds none starts again under its name (`commit`
    sets what it holds aside)."""
    if args.run_name:
        run_dir = Path(args.logdir) / args.run_name.replace(SEED_FIELD, str(config.train.seed))
        return named_run(config, run_dir, owned)
    name, _ = resolve_env_id(config.env.id)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = make_run_dir(
        Path(args.logdir) / f"{name}__{config.variant}__s{config.train.seed}__{stamp}"
    )
    owned.callback(os.close, hold(run_dir))
    return config, run_dir, None


def named_run(config: Config, run_dir: Path, owned: ExitStack) -> Launch:
    """A run directory given by name, locked: resumed when it holds checkpoints (refused when
    they are of another config or a budget below their step), otherwise a new run."""
    owned.callback(os.close, hold(run_dir, create=True))
    if not list_checkpoints(run_dir):
        return config, run_dir, None
    _, checkpoint = load_latest(run_dir, on_skip=warn_skipped)
    saved = configs.from_dict(checkpoint["config"])
    check_same_run(config, saved, run_dir)
    check_budget(config, saved, int(checkpoint["step"]), run_dir)
    return config, run_dir, checkpoint


def commit(launches: list[Launch]) -> list[Launch]:
    """Once every seed's launch is checked: each new run's directory has what an earlier attempt
    left set aside (nothing is deleted), and every run's config.yaml is this launch's (its
    budget)."""
    for config, run_dir, checkpoint in launches:
        if checkpoint is None and holds_anything(run_dir):
            aside = set_aside(run_dir)
            print(
                f"{run_dir} held no checkpoint: the run starts again from step 0, and what the "
                f"earlier attempt wrote is kept in {aside}.",
                file=sys.stderr,
            )
        write_config(run_dir, configs.to_dict(config))
    return launches


def resumed_runs(args: argparse.Namespace, owned: ExitStack) -> list[Launch]:
    """The run's saved config (with a new --total-steps or --device if given) and its checkpoint,
    and the same for every seed it was trained with in one process (its checkpoint names them);
    a seed among those that never wrote a checkpoint starts again under its name."""
    fixed = [
        f"--{k.replace('_', '-')}"
        for k in ("env", "variant", "seed", "seeds", "preset", "config", "run_name")
        if getattr(args, k) is not None
    ] + (["--set"] if args.set else [])
    if fixed:
        raise UserError(
            f"--resume keeps the run's own config; drop {', '.join(fixed)} "
            "(only --total-steps and --device may change)."
        )
    run_dir = Path(args.resume)
    if run_dir.is_file():
        raise UserError(
            f"--resume takes the run directory, not a checkpoint file: {run_dir.parent}"
        )
    if not run_dir.is_dir():
        raise UserError(f"Checkpoint or run directory {run_dir} does not exist.")
    owned.callback(os.close, hold(run_dir))
    _, checkpoint = load_latest(run_dir, on_skip=warn_skipped)
    config = resumed_config(args, checkpoint, run_dir)
    launches = [(config, run_dir, checkpoint)]
    for sibling in checkpoint.get(SEED_GROUP, []):
        if sibling["run"] != run_dir.name:
            seed_config = with_seed(config, int(sibling["seed"]))
            launches.append(
                named_sibling(args, run_dir.parent / sibling["run"], seed_config, owned)
            )
    check_memory([c for c, _, _ in launches])
    return commit(launches)


def named_sibling(
    args: argparse.Namespace, run_dir: Path, config: Config, owned: ExitStack
) -> Launch:
    """A seed trained with the resumed run: its own checkpoint and config when it has one (which
    must be `config` but for the budget and device), else `config` from step 0."""
    if not list_checkpoints(run_dir):
        return named_run(config, run_dir, owned)
    owned.callback(os.close, hold(run_dir))
    _, checkpoint = load_latest(run_dir, on_skip=warn_skipped)
    own = resumed_config(args, checkpoint, run_dir)
    check_same_run(config, own, run_dir)
    return own, run_dir, checkpoint


def resumed_config(args: argparse.Namespace, checkpoint: dict, run_dir: Path) -> Config:
    """A checkpoint's config with this launch's --total-steps and --device, checked."""
    saved = configs.from_dict(checkpoint["config"])
    changes = {"total_steps": args.total_steps, "device": args.device}
    train = replace(saved.train, **{k: v for k, v in changes.items() if v is not None})
    config = replace(saved, train=train)
    configs.load.check_values(config)
    check_budget(config, saved, int(checkpoint["step"]), run_dir)
    resolve_device(config.train.device)
    return config


def check_seeds_combine(config: Config, seeds: int) -> None:
    """Refuse, for several seeds in one process, the options the stacked networks cannot follow,
    each by name and why."""
    if seeds == 1:
        return
    refused = {
        "interventions.inject": (
            config.interventions.inject.enabled,
            "it changes the network's structure mid-run, which the seeds' stacked parameters "
            "cannot follow",
        ),
        "train.compile": (
            config.train.compile,
            "the seeds' stacked forward is not compiled; train seeds separately to compile",
        ),
    }
    for key, (on, why) in refused.items():
        if on:
            raise UserError(f"{key} cannot be used with --seeds naming {seeds} seeds: {why}.")


def check_memory(seeds: list[Config], meminfo: Path = Path("/proc/meminfo")) -> None:
    """Refuse, before anything is built, seeds whose replay buffers would not fit in the memory
    available now (MemAvailable): their arrays are allocated lazily, so an oversized run would
    only fail, or swap, hours in. A buffer is counted as far as the budget fills it:
    min(replay.capacity, train.total_steps) transitions."""
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines())
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return  # not Linux: nothing to check against
    config = seeds[0]
    env, spec, _ = make_env(config.env.id, 1, 0, config.env)
    env.close()
    replay = run_replay(config, spec, seed=0)
    filled = min(config.replay.capacity, config.train.total_steps)
    each = replay.nbytes() * filled / config.replay.capacity
    if each * len(seeds) > available:
        gib = 2**30
        raise UserError(
            f"{len(seeds)} seed(s) need {each * len(seeds) / gib:.1f} GiB of replay buffers "
            f"({each / gib:.2f} GiB each for {filled:,} transitions: replay.capacity, or "
            f"train.total_steps when smaller), and {available / gib:.1f} GiB of memory is "
            f"available; train fewer seeds per process (at most {int(available // each)}) or "
            "lower replay.capacity."
        )


def check_budget(config: Config, saved: Config, step: int, run_dir: Path) -> None:
    """Refuse a new budget below the step a run has reached: config.yaml would then call a run
    finished at a budget it went past, and the report would group it with runs of that budget."""
    total = config.train.total_steps
    if total < step and total != saved.train.total_steps:
        raise UserError(
            f"--total-steps {total:,} is below the step {run_dir} has reached ({step:,}); give "
            f"at least {step:,}, or keep its budget of {saved.train.total_steps:,}."
        )


def make_run_dir(run_dir: Path) -> Path:
    """Create the run directory, with a numeric suffix if that name is taken."""
    candidate, index = run_dir, 1
    try:
        while True:
            try:
                candidate.mkdir(parents=True)
                return candidate
            except FileExistsError:
                index += 1
                candidate = run_dir.with_name(f"{run_dir.name}-{index}")
    except OSError as error:
        raise UserError(f"Cannot create the run directory {candidate}: {error.strerror}.") from None


def check_same_run(config: Config, saved: Config, run_dir: Path) -> None:
    """Refuse to resume `run_dir` under flags that change its config (beyond budget, device and
    threads)."""
    changed = configs.load.changed_keys(config, saved)
    if changed:
        raise UserError(
            f"{run_dir} holds a run whose config differs from these flags in "
            f"{', '.join(changed)}; use another --run-name, or the same flags to resume it."
        )


def warn_skipped(path: Path, reason: str) -> None:
    """One line per unreadable checkpoint that a resume passes over for an older one."""
    print(f"warning: {reason} Falling back to the previous checkpoint.", file=sys.stderr)
