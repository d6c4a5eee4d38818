"""`probe_fit_loss`: plasticity measured directly, as the ability to fit fresh random targets.

Lyle et al. 2023, "Understanding plasticity in neural networks" (§3): train a copy of the network
for a fixed budget on a new regression task and compare its loss with a freshly initialised
network's on the same task. The original network is never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from networks.init import reset_all

LOSS_FLOOR = 1e-12
"""Keeps the ratio finite if the fresh network fits the targets exactly."""


def fresh_copy(
    model: nn.Module, seed: int, reinit: Callable[[nn.Module], None] = reset_all
) -> nn.Module:
    """A deep copy of `model` re-initialised by `reinit` under a private RNG seeded with `seed`
    (the global RNG state is restored afterwards, so callers' randomness is unaffected)."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=_cuda_devices(model)):
        torch.manual_seed(seed)
        reinit(fresh)
    return fresh


def standardise(y: Tensor) -> Tensor:
    """Zero mean, unit variance per output dimension over the probe set, so the loss ratio does
    not depend on the target network's output scale; a constant output dimension becomes 0."""
    std = y.std(dim=0, correction=0, keepdim=True)
    return (y - y.mean(dim=0, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def _flat_outputs(net: nn.Module, inputs: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([net(x).reshape(x.shape[0], -1) for x in inputs.split(batch_size)])


def fit(
    net: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> float:
    """Train `net` in place with Adam on MSE(net(x) flattened, target) for `steps` minibatches
    drawn (with replacement) by a generator seeded with `seed`; return the final MSE on all of
    `inputs`. Dropout and the like draw from a private RNG seeded the same way."""
    net.train()
    for p in net.parameters():
        p.grad = None
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=_cuda_devices(net)), torch.enable_grad():
        torch.manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(inputs.shape[0], (batch_size,), generator=generator)
            idx = idx.to(inputs.device)
            prediction = net(inputs[idx]).reshape(batch_size, -1)
            loss = (prediction - targets[idx]).pow(2).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    net.eval()
    return float((_flat_outputs(net, inputs, batch_size) - targets).pow(2).mean())


def probe_fit_loss(
    model: nn.Module,
    inputs: Tensor,
    *,
    steps: int = 100,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    relative: bool = False,
    reinit: Callable[[nn.Module], None] = reset_all,
) -> float:
    """Final fit loss of a copy of `model` on fresh random targets, over that of a fresh network.

    Targets are the outputs on `inputs` of a freshly initialised network of the same architecture
    (`reinit` on a deep copy, seed `seed`), standardised per output dimension, so they are
    learnable and of unit scale. A second fresh copy (seed `seed + 1`) and a copy of `model` are
    each trained with Adam (`lr`) for `steps` minibatches of `batch_size` (same minibatch sequence)
    and scored by their final MSE on all of `inputs`. 1 ≈ as plastic as a new network; larger
    means plasticity lost. Deterministic for a given seed; `model` is untouched.

    Defaults (100 steps of 32) cost about 200 training steps of the network. With the default
    `relative=False` the copy must also move its outputs from wherever they are (e.g. Q-values of
    100) to unit scale, so large-target training shows up as lost plasticity (Lyle et al. 2024).
    `relative=True` fits each net to its own initial outputs plus the targets instead: trainability
    alone, without the cost of moving the output scale. `reinit` sets the "fresh" initialisation
    (default: each layer's own initialisation, `networks.init.reset_all`).
    """
    targets = standardise(_flat_outputs(fresh_copy(model, seed, reinit).eval(), inputs, batch_size))
    losses = []
    for net in (copy.deepcopy(model), fresh_copy(model, seed + 1, reinit)):
        offset = _flat_outputs(net.eval(), inputs, batch_size) if relative else 0.0
        losses.append(
            fit(net, inputs, targets + offset, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
        )
    return losses[0] / max(losses[1], LOSS_FLOOR)
