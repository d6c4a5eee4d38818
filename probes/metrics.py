"""Pure plasticity metrics: functions of tensors, no modules, no state.

`probes.measure` gathers the statistics these functions take (per-unit mean |activation|, per-unit
rate of positive preactivation, singular values of the feature matrix, NTK eigenvalues); each
function here states its formula and source, and returns a finite value for any finite input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DORMANT_EPS = 1e-9
"""ReDo's guard in the score's denominator (Sokar et al. 2023, eq. 1)."""


def per_unit_mean(x: Tensor) -> Tensor:
    """Mean of an activation over everything but the unit dimension: one value per unit.

    A unit is one feature of a linear layer (last dim of [B, F]) or one channel of a conv layer
    (dim 1 of [B, C, ...], torch's channels-first layout), so a conv channel is pooled over the
    batch and every position. Tensors with fewer than 2 dims are one unit.
    """
    x = x.float()
    if x.dim() < 2:
        return x.mean().reshape(1)
    unit = -1 if x.dim() == 2 else 1
    dims = [d for d in range(x.dim()) if d != unit % x.dim()]
    return x.mean(dim=dims)


def dormant_scores(mean_abs: Tensor) -> Tensor:
    """ReDo score s_i = E|a_i| / (mean_k E|a_k| + 1e-9) of each unit of one layer.

    Sokar et al. 2023, "The Dormant Neuron Phenomenon in Deep RL", eq. 1; `mean_abs[i]` is E|a_i|
    over the batch (and positions). An all-zero layer scores 0 everywhere (never 0/0).
    """
    mean_abs = mean_abs.double()
    return mean_abs / (mean_abs.mean() + DORMANT_EPS)


def dormant_mask(mean_abs: Tensor, tau: float) -> Tensor:
    """Units with ReDo score s_i ≤ τ (τ-dormant). With τ = 0 these are the dead units, E|a_i| = 0.

    Scores are non-negative, so s_i ≤ 0 exactly when the unit's output is zero on every input.
    """
    return dormant_scores(mean_abs) <= tau


def linearized_mask(positive_rate: Tensor, threshold: float = 0.99) -> Tensor:
    """Units whose preactivation is > 0 on at least `threshold` of the inputs.

    `positive_rate[i]` = P(z_i > 0) over the batch (and positions). For a ReLU such a unit acts
    as the identity: it adds no nonlinearity (Lyle et al. 2024, "Disentangling the Causes of
    Plasticity Loss", §4 on preactivation shift).
    """
    return positive_rate >= threshold


def srank(singular_values: Tensor, delta: float = 0.01) -> int:
    """srank_δ = min{k : Σ_{i≤k} σ_i ≥ (1−δ) Σ_i σ_i}, σ sorted in decreasing order.

    Kumar et al. 2021, "Implicit Under-Parameterization", eq. 1. A zero matrix has srank 0.
    """
    sigma = singular_values.double().flatten().sort(descending=True).values
    total = sigma.sum()
    if sigma.numel() == 0 or total <= 0:
        return 0
    cumulative = sigma.cumsum(0)
    # The least k whose prefix sum reaches the threshold; cumulative is non-decreasing.
    return int((cumulative < (1.0 - delta) * total).sum().item()) + 1


def effective_rank(singular_values: Tensor) -> float:
    """erank = exp(H(p)), p_i = σ_i / Σ_k σ_k, H(p) = −Σ p_i log p_i (with 0 log 0 = 0).

    Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality", def. 1.
    A zero matrix has effective rank 0 (rather than exp of an undefined entropy).
    """
    sigma = singular_values.double().flatten().clamp_min(0.0)
    total = sigma.sum()
    if sigma.numel() == 0 or total <= 0:
        return 0.0
    p = sigma / total
    entropy = -torch.special.xlogy(p, p).sum()
    return float(entropy.exp().item())


def condition_number(eigenvalues: Tensor, floor: float = torch.finfo(torch.float64).eps) -> float:
    """κ = λ_max / max(λ_min, floor · λ_max) of a symmetric positive semi-definite matrix.

    λ_min of a singular Gram matrix is 0 or a round-off-sized negative number; clamping it to
    `floor`·λ_max keeps κ finite, at most 1/floor (≈ 4.5e15 for float64's ε): "singular".
    A zero matrix (λ_max ≤ 0) is as singular as it gets and reads 1/floor.
    """
    ev = eigenvalues.double().flatten()
    lam_max = ev.max()
    if lam_max <= 0:
        return 1.0 / floor
    lam_min = torch.maximum(ev.min(), lam_max * floor)
    return float((lam_max / lam_min).item())


def numerical_rank(eigenvalues: Tensor, rtol: float) -> int:
    """Count of eigenvalues λ_i > rtol · λ_max of a positive semi-definite matrix (0 if none)."""
    ev = eigenvalues.double().flatten()
    if ev.numel() == 0 or ev.max() <= 0:
        return 0
    return int((ev > rtol * ev.max()).sum().item())


def gram_rank_rtol(n: int, jacobian_dtype: torch.dtype) -> float:
    """Relative eigenvalue tolerance for the rank of a Gram matrix G = J Jᵀ of n rows.

    Rounding J (in `jacobian_dtype`) perturbs its singular values by about n·ε·σ_max, hence G's
    eigenvalues (σ²) by (n·ε)²·λ_max; G itself is formed in float64, whose eigensolver resolves
    about n·ε₆₄·λ_max. The tolerance is the larger of the two (cf. numpy.linalg.matrix_rank).
    """
    eps = torch.finfo(jacobian_dtype).eps if jacobian_dtype.is_floating_point else 0.0
    eps64 = torch.finfo(torch.float64).eps
    return max((n * eps) ** 2, n * eps64)


def l2_norm(tensors: list[Tensor]) -> float:
    """‖θ‖₂ = sqrt(Σ_t Σ_j θ_tj²) over a list of tensors, accumulated in float64."""
    total = 0.0
    for t in tensors:
        total += float(t.detach().double().pow(2).sum())
    return math.sqrt(total)
