"""Networks: torsos (Nature CNN, MLP), value heads, the LayerNorm option."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from configs.schema import NetworkConfig
from networks.heads import CategoricalHead, ScalarHead, make_support
from networks.torsos import MLP, NatureCNN, layer_norm

__all__ = ["CategoricalHead", "MLP", "NatureCNN", "QNetwork", "ScalarHead", "build_network"]


class QNetwork(nn.Module):
    """torso -> head. uint8 observations (Atari frames) are scaled to [0, 1] here, so that replay
    and the probe batch hand raw frames over and the host-to-device copy stays 1 byte per pixel."""

    def __init__(self, torso: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.torso = torso
        self.head = head

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
        return self.head(self.torso(x))

    def q_values(self, output: Tensor) -> Tensor:
        return self.head.q_values(output)


def build_network(
    obs_shape: Sequence[int], num_actions: int, config: NetworkConfig, *, categorical: bool
) -> QNetwork:
    """Nature CNN for image stacks ([C, H, W]), MLP for vectors; scalar or categorical head."""
    norm = layer_norm if config.layer_norm else None
    if len(obs_shape) == 3:
        torso = NatureCNN(obs_shape, hidden=config.cnn_hidden, norm=norm)
    else:
        torso = MLP(int(obs_shape[0]), hidden=config.mlp_hidden, norm=norm)
    if categorical:
        support = make_support(config.v_min, config.v_max, config.num_atoms)
        head = CategoricalHead(torso.out_features, num_actions, support)
    else:
        head = ScalarHead(torso.out_features, num_actions)
    return QNetwork(torso, head)
