"""Resets of whole parameters: fresh draws of a network's initialisation, shrink-and-perturb, and
re-initialising the last layers. Each touches the network in place, and the optimiser's moments
of what it re-initialises, and returns how many parameters it touched."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from networks import NoisyLinear
from networks.init import reset_all

AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, NoisyLinear)
"""Layers whose parameters' first dimension indexes their output units (rows, channels)."""


class FreshDraws:
    """New initialisations of a network: a scratch copy re-initialised by every layer's own
    initialisation (`networks.init.reset_all`: the scheme it was built with) under
    torch.manual_seed(seed).
    The global RNG is restored afterwards, so a draw never changes the run's other randomness."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.scratch: nn.Module | None = None

    def draw(self, seed: int) -> dict[str, Tensor]:
        """{parameter name: freshly initialised value}, same names as network.named_parameters()."""
        names = [name for name, _ in self.network.named_parameters()]
        if self.scratch is None or names != [n for n, _ in self.scratch.named_parameters()]:
            self.scratch = copy.deepcopy(self.network)  # again after a structural change
        devices = sorted({p.device.index or 0 for p in self.network.parameters() if p.is_cuda})
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            reset_all(self.scratch)
        return {name: p.detach().clone() for name, p in self.scratch.named_parameters()}


def zero_moments(optimizer: torch.optim.Optimizer, param: Tensor, index: tuple = ()) -> None:
    """Zero Adam's first and second moments (exp_avg, exp_avg_sq) of `param[index]`; the step
    count is per tensor in torch's Adam and is kept. A no-op before the first step."""
    state = optimizer.state.get(param, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][index] = 0.0


@torch.no_grad()
def shrink_perturb(
    network: nn.Module, fresh: dict[str, Tensor], *, shrink: float, perturb: float
) -> int:
    """θ ← λθ + σθ_fresh for every trainable parameter (Ash & Adams 2020, "On Warm-Starting
    Neural Network Training", §4), θ_fresh a new initialisation. The optimiser state is kept, as
    Plasticine does.

    Returns:
        the number of parameters touched.
    """
    touched = 0
    for name, p in trainable(network):
        p.mul_(shrink).add_(fresh[name], alpha=perturb)
        touched += p.numel()
    return touched


def trainable(network: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters resets act on: frozen ones (an injected head's) stay as they are."""
    return [(name, p) for name, p in network.named_parameters() if p.requires_grad]


def layer_groups(network: nn.Module) -> list[list[str]]:
    """Names of the parametrised leaf modules, grouped into layers in forward order: each affine
    layer starts a group and the normalisation after it joins that group; every module under
    `head` (a dueling head's two streams, an injected head's three) is one group."""
    groups: list[list[str]] = []
    for name, module in network.named_modules():
        if list(module.children()) or not list(module.parameters(recurse=False)):
            continue
        in_head = name == "head" or name.startswith("head.")
        joins_head = in_head and groups and groups[-1][0].startswith("head")
        if groups and (joins_head or not (isinstance(module, AFFINE) or in_head)):
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


@torch.no_grad()
def reset_last_layers(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    fresh: dict[str, Tensor],
    *,
    layers: int,
) -> int:
    """Re-initialise the last `layers` layers (see `layer_groups`; frozen parameters are kept)
    and zero their Adam moments
    (Nikishin et al. 2022, "The Primacy Bias in Deep Reinforcement Learning", §4).

    Returns:
        the number of parameters touched.
    """
    modules = [name for group in layer_groups(network)[-layers:] for name in group]
    touched = 0
    for module in modules:
        for leaf, p in network.get_submodule(module).named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            p.copy_(fresh[f"{module}.{leaf}"])
            zero_moments(optimizer, p)
            touched += p.numel()
    return touched
