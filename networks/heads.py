"""Value heads: penultimate features to what the loss needs. Heads know nothing about losses."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ScalarHead(nn.Module):
    """One Q-value per action."""

    def __init__(self, in_features: int, num_actions: int) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.out = nn.Linear(in_features, num_actions)

    def forward(self, features: Tensor) -> Tensor:  # [B, A]
        return self.out(features)

    def q_values(self, output: Tensor) -> Tensor:  # [B, A]
        return output


class CategoricalHead(nn.Module):
    """K logits per action over a fixed support; Q(s, a) is the expectation."""

    def __init__(self, in_features: int, num_actions: int, support: Tensor) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.out = nn.Linear(in_features, num_actions * len(support))
        self.register_buffer("support", support.clone())

    def forward(self, features: Tensor) -> Tensor:  # [B, A, K] logits
        return self.out(features).view(features.shape[0], self.num_actions, -1)

    def q_values(self, logits: Tensor) -> Tensor:  # [B, A]
        return (logits.softmax(-1) * self.support).sum(-1)


def make_support(v_min: float, v_max: float, num_atoms: int) -> Tensor:
    """K evenly spaced atoms from v_min to v_max."""
    return torch.linspace(v_min, v_max, num_atoms)
