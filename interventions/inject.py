"""Plasticity injection (Nikishin et al. 2023, "Deep Reinforcement Learning with Plasticity
Injection", §3, eq. 1)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from networks.init import reset_all


class InjectedHead(nn.Module):
    """h_θ(φ) + (h_θ'(φ) − h_θ'⁻(φ)): the old head θ frozen, a fresh head θ' that learns, and a
    frozen copy θ'⁻ of the fresh head, so that the output is unchanged at the moment of
    injection. Gradients still reach the torso φ through all three (as in the paper).
    Q-values are read from the output as the old head reads them."""

    def __init__(self, frozen: nn.Module, fresh: nn.Module) -> None:
        super().__init__()
        self.frozen = frozen.requires_grad_(False)
        self.fresh = fresh
        self.fresh_frozen = copy.deepcopy(fresh).requires_grad_(False)
        self.num_actions = getattr(frozen, "num_actions", None)

    def forward(self, features: Tensor) -> Tensor:
        # The difference first: exactly 0 at injection, so the output is unchanged bit for bit.
        return self.frozen(features) + (self.fresh(features) - self.fresh_frozen(features))

    def q_values(self, output: Tensor) -> Tensor:
        return self.frozen.q_values(output)


def is_injected(state_dict: dict) -> bool:
    """Whether a saved network state holds an injected head (checkpoints, best.pt)."""
    return any(key.startswith("head.fresh_frozen.") for key in state_dict)


@torch.no_grad()
def inject(
    networks: Sequence[nn.Module], optimizer: torch.optim.Optimizer | None, *, seed: int
) -> int:
    """Replace each network's `head` by an `InjectedHead` with one fresh head, drawn by the
    head's own initialisation under torch.manual_seed(seed), shared by all the networks (the
    online network and the target networks that mirror it: each keeps its own output). The fresh
    head of the first network joins `optimizer`: each of its parameters in a new group with the
    settings of the group that held the old head's matching parameter (so weight decay covers
    the same kinds of parameter as before).

    Returns:
        the number of new trainable parameters.
    """
    first = networks[0]
    fresh = copy.deepcopy(first.head)
    devices = sorted({p.device.index or 0 for p in fresh.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        reset_all(fresh)
    old = list(first.head.parameters())
    for network in networks:
        head = fresh if network is first else copy.deepcopy(fresh)
        network.head = InjectedHead(network.head, head.requires_grad_(network is first))
    if optimizer is not None:
        add_like(optimizer, list(first.head.fresh.parameters()), old)
    return sum(p.numel() for p in first.head.fresh.parameters())


def add_like(optimizer: torch.optim.Optimizer, new: list[Tensor], old: list[Tensor]) -> None:
    """Add `new[i]` to the optimiser with the settings of the group holding `old[i]`, one new
    group per old group that had any (in the old groups' order, so a rebuilt optimiser matches a
    saved state)."""
    for group in list(optimizer.param_groups):
        ids = {id(p) for p in group["params"]}
        params = [n for n, o in zip(new, old, strict=True) if id(o) in ids]
        if params:
            settings = {k: v for k, v in group.items() if k != "params"}
            optimizer.add_param_group({**settings, "params": params})
