"""Parameter roles: which parameters a penalty acts on is decided by the module that owns them,
never by a tensor's shape (a conv LayerNorm's gain is 3-D, a noisy layer's σ is 2-D)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from torch import nn

from networks.init import INITIALISED
from networks.noisy import NoisyLinear

Regularize = Literal["weights", "all"]


def weight_names(module: nn.Module) -> tuple[str, ...]:
    """The names of `module`'s own weights: `weight` of a Linear or conv layer, `weight_mu` of a
    noisy layer; () for anything else (norms, biases, noise scales)."""
    if isinstance(module, INITIALISED):
        return ("weight",)
    if isinstance(module, NoisyLinear):
        return ("weight_mu",)
    return ()


def regularized(
    network: nn.Module, which: Regularize = "weights"
) -> Iterator[tuple[str, nn.Parameter]]:
    """(name, parameter) of the trainable parameters that L2, weight decay and regen act on:
    with `weights`, the weight matrices and kernels of Linear and conv layers and the μ weights of
    noisy layers, never biases, norm affine parameters or noise scales σ (Lyle et al. 2024 and
    AdamW's usual practice decay weights only); with `all`, every trainable parameter. A
    parameter shared by two layers is given once."""
    seen: set[int] = set()
    for prefix, module in network.named_modules():
        for local, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            if which == "all" or local in weight_names(module):
                seen.add(id(param))
                yield (f"{prefix}.{local}" if prefix else local), param
