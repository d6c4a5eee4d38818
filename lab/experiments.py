"""The lab's experiments: which problems a (variant, seed) runs, at which size, and what one number
each problem reports.

- `offset`: pre-training with target offsets 0, 10 and 100, then fresh targets; the numbers are
  the loss ratio to a fresh network (1 = no plasticity lost; higher is worse), and beside it the
  squared error of the values itself, and the fresh network's, in target units for every head.
- `labels`: random labels re-drawn abruptly and smoothly, none in a task's last fifth; the number
  is the training accuracy at the end of the last quarter of the tasks (higher is better).
- `swiss_cheese`: each mitigation against each problem: offset 100, abrupt and smooth labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from configs.schema import Config
from lab import problems
from lab.problems import LabelSize, OffsetSize


@dataclasses.dataclass(frozen=True)
class Size:
    """The size of every problem, so that `--quick` and the default differ in one place."""

    inputs: int
    offset: OffsetSize
    labels: LabelSize


# settle, a fifth of a task: at the default size `ln` learns a re-drawn label within about 100
# updates (smooth tasks 7-8, seeds 1-2, accuracy by updates since the label changed: 0.21-0.29
# under 25, 0.58-0.67 at 25-50, 0.85-0.89 at 50-100, 0.77-0.92 beyond).
QUICK = Size(
    inputs=256,
    offset=OffsetSize(outputs=10, pretrain_steps=1000, fit_steps=500, offsets=(0, 10, 100)),
    labels=LabelSize(classes=10, task_steps=500, tasks=8, settle=100),
)
FULL = Size(
    inputs=512,
    offset=OffsetSize(outputs=10, pretrain_steps=4000, fit_steps=1000, offsets=(0, 10, 100)),
    labels=LabelSize(classes=10, task_steps=1000, tasks=8, settle=200),
)
LABEL_INPUTS = 256
"""Inputs whose labels are memorised: a fresh 256x256 MLP reaches ~70% in a 1,000-update task."""


@dataclasses.dataclass(frozen=True)
class Condition:
    """One problem under one setting, reported as one number per (variant, seed)."""

    name: str
    metric: str
    higher_is_worse: bool
    log_scale: bool
    """Averaged over seeds in log space (ratios, losses), else arithmetically (accuracy)."""


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    conditions: Callable[[Size], list[Condition]]
    run: Callable[[Config, Tensor, Size, int, Path], dict[str, float]]
    """(config, inputs, size, seed, run directory) -> {condition: number}."""
    headline: str | None
    """The condition `--json`'s "results" reports; None reports every condition (a table)."""


def offset_conditions(size: Size, offsets: tuple[float, ...] | None = None) -> list[Condition]:
    """The fresh network's squared error, then per offset the ratio to it and the loss itself."""
    ratios_and_losses = [
        condition
        for c in offsets or size.offset.offsets
        for condition in (
            Condition(f"offset{c:g}", "loss_ratio", True, True),
            Condition(f"offset{c:g}_mse", "mse", True, True),
        )
    ]
    return [Condition("fresh_mse", "mse", True, True), *ratios_and_losses]


def label_conditions(size: Size) -> list[Condition]:
    return [Condition(mode, "final_accuracy", False, False) for mode in ("abrupt", "smooth")]


def target_support(config: Config, low: float, high: float) -> Config:
    """The categorical heads' support widened to cover every target of a problem, [low, high]."""
    network = dataclasses.replace(config.network, v_min=low, v_max=high)
    return dataclasses.replace(config, network=network)


def on_task_clock(config: Config, steps: int) -> Config:
    """`reset_head` once per change of targets, every `steps` updates: before the first update of
    every label task after the first, and once in the offset problem, between pre-training and
    the fit phase. The head is reset when the targets change, which the lab knows and an agent
    does not (its resets come every 20,000 updates whatever the data, Nikishin et al. 2022): a
    best case for the reset, the same in both problems. (At the `lab` preset's 1,000 updates the
    offset problem's last pre-training reset fell on the fit phase's first update, and three
    more came before it.)"""
    resets = dataclasses.replace(config.interventions.reset_head, interval=steps)
    interventions = dataclasses.replace(config.interventions, reset_head=resets)
    return dataclasses.replace(config, interventions=interventions)


def run_offset(
    config: Config,
    inputs: Tensor,
    size: Size,
    seed: int,
    run_dir: Path,
    offsets: tuple[float, ...] | None = None,
) -> dict[str, float]:
    sized = dataclasses.replace(size.offset, offsets=offsets or size.offset.offsets)
    supported = target_support(config, -10.0, max(sized.offsets) + 10.0)
    clocked = on_task_clock(supported, sized.pretrain_steps)
    return problems.offset(clocked, inputs, sized, seed=seed, logdir=run_dir)


def run_labels(
    config: Config, inputs: Tensor, size: Size, seed: int, run_dir: Path
) -> dict[str, float]:
    clocked = on_task_clock(target_support(config, -1.0, 2.0), size.labels.task_steps)
    results = {}
    for mode in ("abrupt", "smooth"):
        accuracies = problems.labels(
            clocked,
            inputs[:LABEL_INPUTS],
            size.labels,
            seed=seed,
            logdir=run_dir / mode,
            smooth=mode == "smooth",
        )
        last = accuracies[-max(1, len(accuracies) // 4) :]
        results[mode] = sum(last) / len(last)
    return results


def run_swiss_cheese(
    config: Config, inputs: Tensor, size: Size, seed: int, run_dir: Path
) -> dict[str, float]:
    largest = (max(size.offset.offsets),)
    results = run_offset(config, inputs, size, seed, run_dir / "offset", offsets=largest)
    return results | run_labels(config, inputs, size, seed, run_dir / "labels")


EXPERIMENTS = {
    e.name: e
    for e in (
        Experiment(
            "offset",
            "target magnitude: pre-train on targets offset by 0, 10, 100, then fit fresh ones",
            offset_conditions,
            run_offset,
            "offset100",
        ),
        Experiment(
            "labels",
            "random labels re-drawn every task, abruptly or smoothly; accuracy at task ends",
            label_conditions,
            run_labels,
            "abrupt",
        ),
        Experiment(
            "swiss_cheese",
            "each mitigation alone and stacked against offset 100, abrupt and smooth labels",
            lambda size: (
                offset_conditions(size, (max(size.offset.offsets),)) + label_conditions(size)
            ),
            run_swiss_cheese,
            None,
        ),
    )
}

VARIANTS = {
    "offset": ["dqn", "ln", "wd", "ln+wd", "hl_gauss", "ln+wd+hl_gauss"],
    "labels": ["dqn", "ln", "wd", "ln+wd", "hl_gauss", "ln+wd+hl_gauss"],
    "swiss_cheese": ["dqn", "ln", "l2", "wd", "ln+wd", "two_hot", "hl_gauss", "ln+wd+hl_gauss",
                     "redo", "shrink_perturb", "reset_head", "ln+wd+hl_gauss+redo"],
}  # fmt: skip
"""The variants an experiment runs when --variants is not given."""

Job = tuple[str, Config, Tensor, Size, int, Path]
"""(experiment, config, inputs, size, seed, run directory): one (variant, seed) of an experiment."""


def run_job(job: Job) -> dict[str, float]:
    """Run one job with the config's thread count (a module-level function: spawned workers
    import it)."""
    name, config, inputs, size, seed, run_dir = job
    torch.set_num_threads(config.train.threads or 1)
    return EXPERIMENTS[name].run(config, inputs, size, seed, run_dir)
