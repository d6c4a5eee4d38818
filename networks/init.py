"""Weight initialisation schemes, as the reference implementations draw them, and the one reset
that every fresh draw goes through (networks at build time, resets, injection, the probes' fits).

A scheme is recorded on each Linear and Conv layer (`layer.init_scheme`), so a deep copy of a
network, or of one of its heads, re-draws with the scheme it was built with.
"""

from __future__ import annotations

import math

from torch import nn

from configs.schema import InitScheme

INITIALISED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layers a scheme applies to; other modules (LayerNorm, noisy layers) keep their own init."""

VARIANCE_SCALING = 1.0 / math.sqrt(3.0)
"""The scale of Dopamine's C51 and IQN networks (dopamine/jax/networks.py `RainbowNetwork`)."""


def fan_in_out(weight_shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear [out, in] or Conv [out, in, *kernel] weight, as Flax and
    torch count them: the kernel's receptive field times the input or output channels."""
    receptive = math.prod(weight_shape[2:])
    return weight_shape[1] * receptive, weight_shape[0] * receptive


def draw(layer: nn.Module, scheme: InitScheme) -> None:
    """Re-draw one layer's parameters in place.

    - `torch`: PyTorch's default, `reset_parameters()` (CleanRL's networks, MinAtar's dqn.py):
      weights and biases U[±1/√fan_in].
    - `xavier_uniform`: weights U[±√(6 / (fan_in + fan_out))] (Glorot & Bengio 2010), biases 0:
      Flax's `xavier_uniform` and zero bias init, as Dopamine's JAX DQN (`NatureDQNNetwork`).
    - `variance_scaling`: weights U[±√(3 s / fan_in)] with s = 1/√3, biases 0: Dopamine's C51
      (`RainbowNetwork`, `variance_scaling(1/√3, 'fan_in', 'uniform')`).
    """
    if scheme == "torch":
        layer.reset_parameters()
        return
    fan_in, fan_out = fan_in_out(tuple(layer.weight.shape))
    if scheme == "xavier_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
    else:
        bound = math.sqrt(3.0 * VARIANCE_SCALING / fan_in)
    nn.init.uniform_(layer.weight, -bound, bound)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def initialise(network: nn.Module, scheme: InitScheme) -> nn.Module:
    """Record `scheme` on every Linear and Conv layer of `network` and draw them with it. Layers
    fresh from their constructors already hold PyTorch's draw, so `torch` draws nothing more (and
    a seed gives the network it gave before schemes existed)."""
    for module in network.modules():
        if isinstance(module, INITIALISED):
            module.init_scheme = scheme
            if scheme != "torch":
                draw(module, scheme)
    return network


def reset_all(model: nn.Module) -> None:
    """A fresh draw of every layer of `model` by its own initialisation: the scheme a layer was
    built with (`initialise`), else its `reset_parameters()` (PyTorch's default, noisy layers',
    LayerNorm's ones and zeros)."""
    for module in model.modules():
        scheme = getattr(module, "init_scheme", None)
        if scheme is not None:
            draw(module, scheme)
            continue
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
