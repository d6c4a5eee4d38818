"""Value heads: penultimate features to what the loss needs. Heads know nothing about losses.

Every head builds its layers with a `linear(in_features, out_features)` factory: `nn.Linear`, or
a noisy layer (`networks.noisy.NoisyLinear`) for the `noisy` option.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor, nn

Linear = Callable[[int, int], nn.Module]
"""Builds a linear layer from (in_features, out_features)."""


def expectation(logits: Tensor, support: Tensor) -> Tensor:
    """Q(s, a) = Σ_k softmax(logits)_k z_k, [..., K] -> [...]."""
    return (logits.softmax(-1) * support).sum(-1)


class ScalarHead(nn.Module):
    """One Q-value per action."""

    def __init__(self, in_features: int, num_actions: int, *, linear: Linear = nn.Linear) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.out = linear(in_features, num_actions)

    def forward(self, features: Tensor) -> Tensor:  # [B, A]
        return self.out(features)

    def q_values(self, output: Tensor) -> Tensor:  # [B, A]
        return output


class CategoricalHead(nn.Module):
    """K logits per action over a fixed support; Q(s, a) is the expectation."""

    def __init__(
        self, in_features: int, num_actions: int, support: Tensor, *, linear: Linear = nn.Linear
    ) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.out = linear(in_features, num_actions * len(support))
        self.register_buffer("support", support.clone())

    def forward(self, features: Tensor) -> Tensor:  # [B, A, K] logits
        return self.out(features).view(features.shape[0], self.num_actions, -1)

    def q_values(self, logits: Tensor) -> Tensor:  # [B, A]
        return expectation(logits, self.support)


def stream(linear: nn.Module) -> nn.Sequential:
    """One dueling stream: a Sequential whose layer is named `fc` (probe keys `head.value.fc`)."""
    return nn.Sequential(OrderedDict(fc=linear))


class DuelingHead(nn.Module):
    """Dueling architecture (Wang et al. 2016, eq. 9): Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a').

    The value stream gives K outputs and the advantage stream A·K; with K = 1 the head is scalar
    ([B, A]). Each stream is one linear layer on the torso's features, as in Dopamine's
    FullRainbowNetwork.
    """

    def __init__(
        self, in_features: int, num_actions: int, *, num_atoms: int = 1, linear: Linear = nn.Linear
    ) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.value = stream(linear(in_features, num_atoms))
        self.advantage = stream(linear(in_features, num_actions * num_atoms))

    def combine(self, features: Tensor) -> Tensor:  # [B, A, K]
        batch = features.shape[0]
        value = self.value(features).view(batch, 1, -1)
        advantage = self.advantage(features).view(batch, self.num_actions, -1)
        return value + advantage - advantage.mean(1, keepdim=True)

    def forward(self, features: Tensor) -> Tensor:  # [B, A]
        return self.combine(features).squeeze(-1)

    def q_values(self, output: Tensor) -> Tensor:  # [B, A]
        return output


class CategoricalDuelingHead(DuelingHead):
    """Dueling per atom on the logits (Hessel et al. 2018, eq. in §3 "Dueling networks"):
    logits(s, a, k) = v_k(s) + a_k(s, a) − mean_a' a_k(s, a'); Q(s, a) is the expectation."""

    def __init__(
        self, in_features: int, num_actions: int, support: Tensor, *, linear: Linear = nn.Linear
    ) -> None:
        super().__init__(in_features, num_actions, num_atoms=len(support), linear=linear)
        self.register_buffer("support", support.clone())

    def forward(self, features: Tensor) -> Tensor:  # [B, A, K] logits
        return self.combine(features)

    def q_values(self, logits: Tensor) -> Tensor:  # [B, A]
        return expectation(logits, self.support)


def make_head(
    in_features: int,
    num_actions: int,
    support: Tensor | None,
    *,
    dueling: bool,
    linear: Linear = nn.Linear,
) -> nn.Module:
    """Scalar head when `support` is None, categorical otherwise; plain or dueling."""
    if support is None:
        head = DuelingHead if dueling else ScalarHead
        return head(in_features, num_actions, linear=linear)
    head = CategoricalDuelingHead if dueling else CategoricalHead
    return head(in_features, num_actions, support, linear=linear)


def make_support(v_min: float, v_max: float, num_atoms: int) -> Tensor:
    """K evenly spaced atoms from v_min to v_max."""
    return torch.linspace(v_min, v_max, num_atoms)
