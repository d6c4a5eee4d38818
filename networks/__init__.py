"""Networks: torsos (Nature CNN, MLP), value heads, the LayerNorm option."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from configs.schema import NetworkConfig
from networks.activations import CRELU_WIDTH, CReLU
from networks.heads import (
    CategoricalDuelingHead,
    CategoricalHead,
    DuelingHead,
    Linear,
    ScalarHead,
    make_head,
    make_support,
)
from networks.init import initialise
from networks.noisy import NoiseSampler, NoisyLinear
from networks.torsos import MLP, MinAtarCNN, NatureCNN, layer_norm

__all__ = [
    "CReLU",
    "CategoricalDuelingHead",
    "CategoricalHead",
    "DuelingHead",
    "MLP",
    "MinAtarCNN",
    "NatureCNN",
    "NoiseSampler",
    "NoisyLinear",
    "QNetwork",
    "ScalarHead",
    "build_network",
]


class QNetwork(nn.Module):
    """torso -> head. uint8 observations (Atari frames) are scaled to [0, 1] here, so that replay
    and the probe batch hand raw frames over and the host-to-device copy stays 1 byte per pixel."""

    def __init__(self, torso: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.torso = torso
        self.head = head
        self.input_format = torch.contiguous_format

    def use_channels_last(self) -> QNetwork:
        """Keep conv kernels, and scale image inputs straight into, the NHWC layout: the same fp32
        math, but oneDNN's convolutions (the backward passes most) run faster on it on a CPU
        (README, "Speed"). A no-op for a network without conv layers."""
        if any(p.ndim == 4 for p in self.parameters()):
            self.to(memory_format=torch.channels_last)
            self.input_format = torch.channels_last
        return self

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.torso(self.scale(obs)))

    def scale(self, obs: Tensor) -> Tensor:
        """float32 input: uint8 frames / 255, laid out as the kernels are (the bytes are permuted
        before widening, and the divide is in place: ~6x cheaper than `obs.float() / 255`, which
        allocates two frame-sized float buffers); other inputs as floats."""
        if obs.dtype != torch.uint8:
            return obs.float()
        if self.input_format is torch.channels_last and obs.ndim == 4:
            obs = obs.contiguous(memory_format=torch.channels_last)
        return obs.float().div_(255.0)

    def q_values(self, output: Tensor) -> Tensor:
        return self.head.q_values(output)


def build_network(
    obs_shape: Sequence[int], num_actions: int, config: NetworkConfig, *, categorical: bool
) -> QNetwork:
    """Nature CNN for image stacks ([C, H, W]), MinAtar's CNN for maps too small for it (MinAtar's
    10x10), MLP for vectors; scalar or categorical head, plain or dueling. With `noisy`, every
    fully connected layer is noisy, the torso's as well as the head's (Fortunato et al. 2018, §4;
    Dopamine's FullRainbowNetwork); the convolutions never are. Linear and conv layers are drawn
    by `config.init` (networks.init), noisy layers by their own rule."""
    linear = head_linear(config)
    options = {**torso_options(config), "linear": linear}
    if len(obs_shape) == 1:
        torso = MLP(int(obs_shape[0]), hidden=config.mlp_hidden, **options)
    elif min(obs_shape[1:]) >= NatureCNN.MIN_SIDE:
        torso = NatureCNN(obs_shape, hidden=config.cnn_hidden, **options)
    else:
        torso = MinAtarCNN(obs_shape, **options)
    support = make_support(config.v_min, config.v_max, config.num_atoms) if categorical else None
    head = make_head(
        torso.out_features, num_actions, support, dueling=config.dueling, linear=linear
    )
    return initialise(QNetwork(torso, head), config.init)


def torso_options(config: NetworkConfig) -> dict:
    """The torso's normalisation, hidden nonlinearity and width scale (CReLU: 1/√2, so the
    parameter count stays close to ReLU's; networks.activations.CRELU_WIDTH)."""
    options: dict = {"norm": layer_norm if config.layer_norm else None}
    if config.nonlinearity == "crelu":
        options.update(act=CReLU, scale=CRELU_WIDTH)
    return options


def head_linear(config: NetworkConfig) -> Linear:
    """The fully connected layers: noisy ones (σ₀ from the config) for the `noisy` option."""
    if config.noisy:
        return partial(NoisyLinear, sigma0=config.noisy_sigma0)
    return nn.Linear
