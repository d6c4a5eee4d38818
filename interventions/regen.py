"""Regenerative regularisation, "L2 Init" (Kumar et al. 2023, "Maintaining Plasticity in
Continual Learning via Regenerative Regularization", eq. 1): an L2 penalty toward the initial
parameters instead of toward zero."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def regen_penalty(params: Sequence[Tensor], initial: Sequence[Tensor]) -> Tensor:
    """Σ_i ‖θ_i − θ_i⁰‖²; the loss adds λ times it, so one SGD step of rate η on it alone gives
    θ ← θ − 2ηλ(θ − θ⁰): each weight moves toward its initial value by the fraction 2ηλ."""
    return sum((p - p0).square().sum() for p, p0 in zip(params, initial, strict=True))
