"""The lab's nonstationary problems, each a sequence of tasks on one learner (Lyle et al. 2024).

Every run logs to its own TensorBoard directory, on the x-axis of optimiser updates: `lab/loss`
(squared error of the values on the current targets, over every input), `lab/accuracy` for the
label problems, what the interventions touched (`interventions/<name>`), and the agents' probes
(`plasticity/<key>`) at the end of every task.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from configs.schema import Config
from envs import derived_seed
from lab.learner import Learner
from networks import build_network
from probes.fit import standardise

LOG_EVERY = 250
"""Updates between two `lab/loss` points."""

PROBE_BATCH, NTK_BATCH = 256, 32
"""Inputs the probes run on, and the NTK's share of them (the agents' defaults, DESIGN.md)."""


@dataclasses.dataclass(frozen=True)
class OffsetSize:
    outputs: int
    pretrain_steps: int
    fit_steps: int
    offsets: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class LabelSize:
    classes: int
    task_steps: int
    tasks: int
    settle: int
    """Updates at the end of every task in which no label changes: every label scored at a task's
    end, under either schedule, has stood unchanged for at least this many updates."""


class RunLog:
    """One run's TensorBoard events, and the task-boundary probes."""

    def __init__(self, run_dir: Path) -> None:
        self.writer = SummaryWriter(str(run_dir))

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}{key}", value, step)

    def step(self, learner: Learner, touched: dict[str, float], targets: Tensor) -> None:
        """After an update: what the interventions touched, and every LOG_EVERY updates the loss."""
        if touched:
            self.scalars("interventions/", touched, learner.updates)
        if learner.updates % LOG_EVERY == 0:
            self.scalars("lab/", {"loss": squared_error(learner, targets)}, learner.updates)

    def boundary(self, learner: Learner) -> None:
        probes = learner.probes(PROBE_BATCH, NTK_BATCH)
        self.scalars("plasticity/", probes, learner.updates)

    def close(self) -> None:
        self.writer.close()


def train(learner: Learner, targets: Tensor, steps: int, log: RunLog) -> float:
    """`steps` updates toward `targets` [N, A]; returns the final squared error over all inputs."""
    for _ in range(steps):
        log.step(learner, learner.step(targets), targets)
    return squared_error(learner, targets)


def squared_error(learner: Learner, targets: Tensor) -> float:
    """(1 / N·A) Σ (Q(x_i)_a − y_ia)², the values in target units."""
    return float((learner.values() - targets).square().mean())


def accuracy(learner: Learner, labels: Tensor) -> float:
    """Share of inputs whose highest value is at their label."""
    return float((learner.values().argmax(1) == labels).float().mean())


def spread(items: Tensor, steps: int) -> tuple[Tensor, ...]:
    """`items` in `steps` consecutive slices of near-equal size, spread evenly over the steps: slice
    k is items[⌊kN/steps⌋ : ⌊(k+1)N/steps⌋] (with fewer items than steps, most slices are empty)."""
    bounds = torch.arange(1, steps) * len(items) // steps
    return items.tensor_split(bounds.tolist())


def teacher_targets(config: Config, inputs: Tensor, outputs: int, *, seed: int) -> Tensor:
    """Regression targets a network can fit: the outputs of a freshly initialised plain network
    (no LayerNorm, scalar head, the same MLP), standardised per output over the inputs, as the
    fit probe's targets (Lyle et al. 2023, §3). The same for every variant of a seed."""
    plain = dataclasses.replace(
        config.network, layer_norm=False, nonlinearity="relu", noisy=False, dueling=False
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        teacher = build_network(inputs.shape[1:], outputs, plain, categorical=False)
    with torch.no_grad():
        return standardise(teacher(inputs))


def offset(
    config: Config, inputs: Tensor, size: OffsetSize, *, seed: int, logdir: Path
) -> dict[str, float]:
    """Target magnitude (Lyle et al. 2024): pre-train on targets y + c, then fit fresh
    targets y'; plasticity is the loss reached on y' relative to a fresh network's,
    ratio_c = L(pre-trained on y + c → y') / L(fresh → y'), 1 = no loss, L the squared error of
    the values (`squared_error`: a categorical head's expectation) in target units. Returns
    {"offset<c>": ratio_c, "offset<c>_mse": L(pre-trained on y + c → y'), "fresh_mse":
    L(fresh → y')}: each ratio divides by its own head's fresh loss, which differs between heads
    (a categorical head's bins are wide against targets of std 1: at the default size, seeds 1-10,
    hl_gauss's is 2.2 times mse's), so the losses are given too, on the scale every head shares.
    The fresh network and every pre-training start from one initialisation."""
    new = teacher_targets(config, inputs, size.outputs, seed=derived_seed(seed, 1))
    old = teacher_targets(config, inputs, size.outputs, seed=derived_seed(seed, 2))
    log = RunLog(logdir / "fresh")
    fresh = train(Learner(config, inputs, size.outputs, seed=seed), new, size.fit_steps, log)
    log.close()
    results = {"fresh_mse": fresh}
    for c in size.offsets:
        log = RunLog(logdir / f"offset{c:g}")
        learner = Learner(config, inputs, size.outputs, seed=seed)
        train(learner, old + c, size.pretrain_steps, log)
        log.boundary(learner)
        loss = train(learner, new, size.fit_steps, log)
        results |= {f"offset{c:g}": loss / fresh, f"offset{c:g}_mse": loss}
        log.boundary(learner)
        log.close()
    return results


def labels(
    config: Config, inputs: Tensor, size: LabelSize, *, seed: int, logdir: Path, smooth: bool
) -> list[float]:
    """Random-label memorisation under nonstationarity (Lyle et al. 2024): every input has
    a label, its target values are one-hot (1 at the label, 0 elsewhere) and the prediction is the
    highest value. Every `task_steps` updates the labels are re-drawn: all at once before the
    task's first update (abrupt), or each exactly once, in a random order, spread evenly over its
    first task_steps − settle updates (smooth), so that both change the same labels as often.
    No label changes in a task's last `settle` updates, so that both schedules are scored on
    labels that have stood for at least that long. Returns the training accuracy on the current
    labels at the end of each task."""
    generator = torch.Generator().manual_seed(derived_seed(seed, 3))
    current = torch.randint(size.classes, (len(inputs),), generator=generator)
    learner = Learner(config, inputs, size.classes, seed=seed)
    log = RunLog(logdir)
    accuracies = []
    for task in range(size.tasks):
        changes = [torch.arange(0)] * size.task_steps  # labels re-drawn before each update
        if task > 0:
            order = torch.randperm(len(inputs), generator=generator)
            changing = size.task_steps - size.settle
            first = spread(order, changing) if smooth else [order, *changes[1:changing]]
            changes = [*first, *changes[changing:]]
        for due in changes:
            current[due] = torch.randint(size.classes, (len(due),), generator=generator)
            targets = F.one_hot(current, size.classes).float()
            log.step(learner, learner.step(targets), targets)
        accuracies.append(accuracy(learner, current))
        log.scalars("lab/", {"accuracy": accuracies[-1]}, learner.updates)
        log.boundary(learner)
    log.close()
    return accuracies
