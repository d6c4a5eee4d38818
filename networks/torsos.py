"""Torsos: observations to penultimate features. Every nonlinearity is a module (so probes can hook
it) and every hidden layer may be followed by a normalisation layer built by the `norm` factory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from networks.activations import expansion
from networks.heads import Linear

Norm = Callable[[Sequence[int]], nn.Module] | None
"""Builds a normalisation layer for activations of the given per-sample shape; None for none."""


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm with its affine map applied after the normalisation rather than fused into
    it: the same function, but computed the way torch.vmap computes a LayerNorm whose gain and
    shift are batched (seeds trained as one, networks.stacked), so that a seed gives the same
    floats alone and in a batch of seeds."""

    def forward(self, x: Tensor) -> Tensor:
        normalized = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        return normalized * self.weight + self.bias


def layer_norm(shape: Sequence[int]) -> nn.Module:
    """LayerNorm over every per-sample axis (for conv maps: C, H and W), learnable affine on."""
    return LayerNorm(list(shape))


def hidden_block(
    name: str,
    layer: nn.Module,
    out_shape: Sequence[int],
    norm: Norm,
    act: type[nn.Module] = nn.ReLU,
) -> list:
    """[(name, layer), (norm_name, norm)?, (relu_name, ReLU)]: normalise, then the nonlinearity
    (`act`, named after its class: relu_fc1, crelu_fc1)."""
    block = [(name, layer)]
    if norm is not None:
        block.append((f"norm_{name}", norm(out_shape)))
    block.append((f"{act.__name__.lower()}_{name}", act()))
    return block


def conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


class ConvTorso(nn.Sequential):
    """Conv layers given as (out channels, kernel, stride), then one fully connected layer; each
    layer a hidden block. Layers are named conv1, conv2, ..., flatten, fc. `act` is the hidden
    nonlinearity, `scale` multiplies every width (channels and `hidden`), e.g. for CReLU, and
    `linear` builds the fully connected layer (a noisy one for the `noisy` option)."""

    def __init__(
        self,
        in_shape: Sequence[int],
        convs: Sequence[tuple[int, int, int]],
        *,
        hidden: int,
        norm: Norm = None,
        act: type[nn.Module] = nn.ReLU,
        scale: float = 1.0,
        linear: Linear = nn.Linear,
    ) -> None:
        channels, height, width = in_shape
        layers: list = []
        for index, (out, kernel, stride) in enumerate(convs, 1):
            height, width = conv_out(height, kernel, stride), conv_out(width, kernel, stride)
            out = round(out * scale)
            conv = nn.Conv2d(channels, out, kernel, stride)
            layers += hidden_block(f"conv{index}", conv, (out, height, width), norm, act)
            channels = out * expansion(act)
        layers.append(("flatten", nn.Flatten()))
        hidden = round(hidden * scale)
        fc = linear(channels * height * width, hidden)
        layers += hidden_block("fc", fc, (hidden,), norm, act)
        super().__init__(OrderedDict(layers))
        self.out_features = hidden * expansion(act)


class NatureCNN(ConvTorso):
    """Mnih et al. (2015): conv 32x8x8/4, 64x4x4/2, 64x3x3/1, then a fully connected layer."""

    CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
    MIN_SIDE = 36
    """The smallest frame side its convolutions fit: 36 -> 8 -> 3 -> 1."""

    def __init__(self, in_shape: Sequence[int], *, hidden: int = 512, **options) -> None:
        super().__init__(in_shape, self.CONVS, hidden=hidden, **options)


class MinAtarCNN(ConvTorso):
    """Young & Tian (2019), MinAtar's DQN network for its 10x10xC maps: one conv 16x3x3/1 and a
    fully connected layer of 128, a quarter of Nature DQN's widths (examples/dqn.py in
    kenjyoung/MinAtar)."""

    def __init__(self, in_shape: Sequence[int], *, hidden: int = 128, **options) -> None:
        super().__init__(in_shape, ((16, 3, 1),), hidden=hidden, **options)


class MLP(nn.Sequential):
    """Fully connected layers for vector observations; `act`, `scale` and `linear` as in
    ConvTorso."""

    def __init__(
        self,
        in_features: int,
        *,
        hidden: Sequence[int],
        norm: Norm = None,
        act: type[nn.Module] = nn.ReLU,
        scale: float = 1.0,
        linear: Linear = nn.Linear,
    ) -> None:
        layers: list = []
        for index, width in enumerate(hidden, 1):
            width = round(width * scale)
            fc = linear(in_features, width)
            layers += hidden_block(f"fc{index}", fc, (width,), norm, act)
            in_features = width * expansion(act)
        super().__init__(OrderedDict(layers))
        self.out_features = in_features
