"""Value losses behind one signature, so that C51 or HL-Gauss is "DQN with another loss".

A loss turns the online network's output at the taken actions and the target network's output at
the bootstrap actions into a per-sample loss; it also says how to read Q-values (in reward units)
from a network output, which acting and the greedy bootstrap action need, and which priority a
prioritized replay gives each sample (`priority(per_sample)`, from the loss of the latest call):
|δ| for scalar heads (Schaul et al. 2016); for two-hot and HL-Gauss the KL divergence from the
encoded target, the part of the cross-entropy the network can still reduce; for C51 the
cross-entropy itself, as Dopamine's Rainbow does. Categorical losses also report
`losses/support_clipped`, the fraction of TD targets the support cannot hold. Every metric is
per sample, so that a batch of several seeds' samples is averaged per seed by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from agents.value_targets import (
    categorical_projection,
    hl_gauss,
    hl_gauss_sigma,
    scalar_expectation,
    signed_hyperbolic,
    signed_hyperbolic_inverse,
    two_hot,
)
from configs.schema import AgentConfig

Metrics = dict[str, Tensor]


def identity(x: Tensor) -> Tensor:
    return x


def value_transform(name: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """(h, h⁻¹): the network predicts h(Q); targets are h(r + γⁿ h⁻¹(Q̄)) (Pohlen et al. 2018)."""
    if name == "signed_hyperbolic":
        return signed_hyperbolic, signed_hyperbolic_inverse
    return identity, identity


def entropy(logits: Tensor) -> Tensor:
    """Entropy (nats) of each categorical distribution in `logits` [..., K] -> [...]."""
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


def target_entropy(probs: Tensor) -> Tensor:
    """H(p) = −Σ_i p_i log p_i (nats) per row of `probs` [..., K], with 0 · log 0 = 0."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def support_clipped(values: Tensor, support: Tensor) -> Tensor:
    """1 for each scalar target in `values` strictly outside [z_0, z_{K-1}], else 0 (their mean
    is the fraction an encoder or C51's projection clips to the end atoms, which the head cannot
    represent)."""
    return ((values < support[0]) | (values > support[-1])).float()


def huber_error(loss: Tensor) -> Tensor:
    """|δ| from the Huber loss (threshold 1): L = δ²/2 for |δ| < 1, |δ| − 1/2 beyond, so
    |δ| = √(2L) for L < 1/2 and L + 1/2 otherwise."""
    return torch.where(loss < 0.5, (2 * loss).sqrt(), loss + 0.5)


class ScalarLoss:
    """Scalar Q head; Huber (Nature DQN, Dopamine) or squared TD error (CleanRL)."""

    def __init__(self, kind: str, transform: str) -> None:
        self.error = F.smooth_l1_loss if kind == "huber" else F.mse_loss
        self.td_error = huber_error if kind == "huber" else torch.sqrt  # |δ| from the loss
        self.h, self.h_inv = value_transform(transform)

    def q_values(self, output: Tensor) -> Tensor:
        return self.h_inv(output)

    def priority(self, per_sample: Tensor) -> Tensor:
        """|δ| = |h(target) − prediction|, the TD error (Schaul et al. 2016), from the loss."""
        return self.td_error(per_sample.detach())

    def __call__(
        self, taken: Tensor, next_taken: Tensor, reward: Tensor, discount: Tensor
    ) -> tuple[Tensor, Metrics]:
        target = reward + discount * self.h_inv(next_taken)  # r + γⁿ Q̄(s', a*)
        loss = self.error(taken, self.h(target), reduction="none")
        return loss, {"target_magnitude": target.abs()}


class C51Loss:
    """Categorical DQN (Bellemare et al. 2017): cross-entropy to the projection of r + γⁿ z onto the
    support, under the target network's distribution at the bootstrap action."""

    def __init__(self, support: Tensor) -> None:
        self.support = support

    def q_values(self, logits: Tensor) -> Tensor:
        return scalar_expectation(logits.softmax(-1), self.support)

    def priority(self, per_sample: Tensor) -> Tensor:
        """The cross-entropy itself, to reproduce Dopamine's Rainbow (rainbow_agent.py and
        full_rainbow set the priority from the loss; its sampler takes the square root).

        Hessel et al. 2018 call this the KL loss, but it is −Σ_j m_j log p_j = H(m) + KL(m ‖ p),
        and the entropy H(m) of the projected target m varies too: 0 when r + γⁿ z_j all land
        on atoms, more when they fall between atoms or the next distribution is spread out.
        """
        return per_sample.detach()

    def __call__(
        self, taken: Tensor, next_taken: Tensor, reward: Tensor, discount: Tensor
    ) -> tuple[Tensor, Metrics]:
        next_probs = next_taken.softmax(-1)
        target = categorical_projection(next_probs, reward, discount, self.support)
        loss = -(target * taken.log_softmax(-1)).sum(-1)
        scalar = reward + discount * scalar_expectation(next_probs, self.support)
        return loss, {
            "target_magnitude": scalar.abs(),
            "entropy": entropy(taken),
            # The expected target r + γⁿ E[Z'] outside the support; the projection also clips
            # single atoms r + γⁿ z_j, which this does not count.
            "losses/support_clipped": support_clipped(scalar, self.support),
        }


class EncodedLoss:
    """Classification-style value loss (Farebrother et al. 2024): the scalar TD target
    r + γⁿ Q̄(s', a*) is computed first, then encoded on the support (two-hot or HL-Gauss) and fit
    with cross-entropy."""

    def __init__(self, encode: Callable[[Tensor], Tensor], support: Tensor, transform: str) -> None:
        self.encode = encode
        self.support = support
        self.h, self.h_inv = value_transform(transform)
        self.target_entropy: Tensor | None = None
        """H(encoded target) [B] of the latest call, which `priority` subtracts."""

    def q_values(self, logits: Tensor) -> Tensor:
        return self.h_inv(scalar_expectation(logits.softmax(-1), self.support))

    def priority(self, per_sample: Tensor) -> Tensor:
        """KL(m ‖ p) = −Σ_i m_i log p_i − H(m): the cross-entropy of the latest call less the
        entropy of its encoded target m, so that a perfect fit has priority 0.

        The cross-entropy alone would score every fit by H(m) at least: ~1.2 nats for any interior
        HL-Gauss target (σ = 0.75 Δ), and 0 to ln 2 for two-hot by where the target falls between
        two atoms, which flattens or scrambles p^α. The loss optimised stays the cross-entropy:
        H(m) does not depend on the parameters, so the gradients are the same. Clamped at 0 against
        rounding; the KL is ≥ 0.
        """
        if self.target_entropy is None or self.target_entropy.shape != per_sample.shape:
            raise ValueError("priority() takes the per-sample loss of this loss's latest call")
        return (per_sample.detach() - self.target_entropy).clamp_min(0.0)

    def __call__(
        self, taken: Tensor, next_taken: Tensor, reward: Tensor, discount: Tensor
    ) -> tuple[Tensor, Metrics]:
        target = reward + discount * self.q_values(next_taken)
        encoded = self.h(target)  # what the head is fit to: h(r + γⁿ h⁻¹(Q̄))
        probs = self.encode(encoded)
        loss = -(probs * taken.log_softmax(-1)).sum(-1)
        self.target_entropy = target_entropy(probs.detach())
        return loss, {
            "target_magnitude": target.abs(),
            "entropy": entropy(taken),
            "losses/support_clipped": support_clipped(encoded, self.support),
        }


ValueLoss = ScalarLoss | C51Loss | EncodedLoss


def make_loss(config: AgentConfig, support: Tensor | None) -> ValueLoss:
    """The loss named by `config.loss`; categorical losses need the head's support."""
    if config.loss in ("huber", "mse"):
        return ScalarLoss(config.loss, config.value_transform)
    assert support is not None, "categorical losses need a support"
    if config.loss == "c51":
        return C51Loss(support)
    if config.loss == "two_hot":
        return EncodedLoss(lambda v: two_hot(v, support), support, config.value_transform)
    sigma = hl_gauss_sigma(support, config.sigma_ratio)
    return EncodedLoss(lambda v: hl_gauss(v, support, sigma), support, config.value_transform)


def is_categorical(loss: str) -> bool:
    return loss in ("c51", "two_hot", "hl_gauss")


__all__ = ["C51Loss", "EncodedLoss", "ScalarLoss", "ValueLoss", "is_categorical", "make_loss"]
