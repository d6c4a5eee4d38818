"""Value-target math: encoders of scalar targets onto a fixed support, and C51's projection.

Pure functions on torch tensors (any float dtype, any device, any leading batch shape). `support`
is a 1-D tensor of K >= 2 evenly spaced bin centres z_0 < ... < z_{K-1}, Δ = z_1 − z_0. Every
encoder first clips the scalar to [z_0, z_{K-1}], every row it returns sums to 1, and none returns
NaN for any finite input, however far outside the support. Half-precision inputs are computed in
float32 and the result is cast back.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "categorical_projection",
    "hl_gauss",
    "hl_gauss_sigma",
    "scalar_expectation",
    "signed_hyperbolic",
    "signed_hyperbolic_inverse",
    "two_hot",
]


def _check_support(support: Tensor) -> None:
    """Shape-only checks (no device sync): a 1-D support of at least two atoms."""
    if support.ndim != 1 or support.numel() < 2:
        raise ValueError(
            f"support must be 1-D with at least 2 atoms, got shape {tuple(support.shape)}"
        )


def _work_dtype(*tensors: Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(result dtype, compute dtype): the promoted float dtype, computed in at least float32."""
    out = tensors[0].dtype
    for t in tensors[1:]:
        out = torch.promote_types(out, t.dtype)
    if not out.is_floating_point:
        out = torch.get_default_dtype()
    return out, torch.promote_types(out, torch.float32)


def _spacing(support: Tensor) -> Tensor:
    """Δ as the mean spacing (z_{K-1} − z_0)/(K − 1): for `torch.linspace` supports this is closer
    to the intended step than z_1 − z_0, which carries the rounding of two atoms."""
    return (support[-1] - support[0]) / (support.numel() - 1)


def two_hot(values: Tensor, support: Tensor) -> Tensor:
    """Encode scalars as probabilities on the two neighbouring atoms of `support`.

    With v clipped to [z_0, z_{K-1}] and z_i ≤ v ≤ z_{i+1}, atom z_i gets (z_{i+1} − v)/Δ and
    z_{i+1} gets (v − z_i)/Δ, with Δ = z_{i+1} − z_i, so Σ_k p_k z_k = v (Schrittwieser et al.
    2020, MuZero, Appendix F; Farebrother et al. 2024, "Stop Regressing", Sec. 3.1).

    Edge cases: a value exactly on an atom puts all its mass there (the upper weight is 0); the top
    atom v = z_{K-1} is encoded with the pair (z_{K-2}, z_{K-1}) and weight 1 on z_{K-1}, so no
    index leaves the support; ±1e9 give one-hot vectors at the end atoms.

    Args:
        values: [...] scalar targets.
        support: [K] increasing atoms (need not be evenly spaced here).

    Returns:
        [..., K] probabilities, dtype promoted from `values` and `support`.
    """
    _check_support(support)
    out_dtype, dtype = _work_dtype(values, support)
    z = support.to(device=values.device, dtype=dtype).contiguous()
    k = z.numel()
    v = values.to(dtype).clamp(z[0], z[-1]).unsqueeze(-1)  # [..., 1]
    # Largest i with z_i <= v, kept to [0, K-2] so that i + 1 is always an atom.
    lower = (torch.searchsorted(z, v.contiguous(), right=True) - 1).clamp(0, k - 2)
    upper = lower + 1
    z_lo, z_hi = z[lower], z[upper]
    w_hi = ((v - z_lo) / (z_hi - z_lo)).clamp(0.0, 1.0)
    probs = torch.zeros(*v.shape[:-1], k, dtype=dtype, device=values.device)
    probs.scatter_add_(-1, lower, 1.0 - w_hi)
    probs.scatter_add_(-1, upper, w_hi)
    return probs.to(out_dtype)


def hl_gauss_sigma(support: Tensor, sigma_ratio: float = 0.75) -> float:
    """σ = sigma_ratio · Δ, by default 0.75 bin widths (Farebrother et al. 2024, "Stop Regressing",
    Sec. 3.1: σ/ς = 0.75, ς the bin width). Reads Δ from the support: one device sync."""
    _check_support(support)
    if sigma_ratio <= 0:
        raise ValueError(f"sigma_ratio must be positive, got {sigma_ratio}")
    return sigma_ratio * float(_spacing(support.to(torch.float64)))


def hl_gauss(values: Tensor, support: Tensor, sigma: float) -> Tensor:
    """HL-Gauss: the mass of N(v, σ²) in each bin of the support, renormalised to the support.

    Bin i spans [e_i, e_{i+1}] with e_i = z_i − Δ/2 (e_K = z_{K-1} + Δ/2); with v clipped to
    [z_0, z_{K-1}] and Φ the standard normal CDF,

        p_i = (Φ((e_{i+1} − v)/σ) − Φ((e_i − v)/σ)) / (Φ((e_K − v)/σ) − Φ((e_0 − v)/σ))

    (Imani & White 2018, "Improving Regression Performance with Distributional Losses";
    Farebrother et al. 2024, "Stop Regressing", Sec. 3.1). Clipping puts v inside [e_0, e_K] at
    least Δ/2 from an edge, so the normaliser is ≥ Φ(Δ/(2σ)) − 1/2 > 0; it is still floored at the
    smallest normal number so that no σ can turn it into 0/0. For v well inside the support (≥ 6σ
    from the ends) the expectation equals v up to |bias| ≤ Δ/π · exp(−2π²σ²/Δ²) (≈ 5e-6 Δ at the
    default σ = 0.75 Δ, see `hl_gauss_sigma`).

    Args:
        values: [...] scalar targets.
        support: [K] evenly spaced bin centres.
        sigma: standard deviation of the Gaussian, > 0, in the units of the support.

    Returns:
        [..., K] probabilities, dtype promoted from `values` and `support`.
    """
    _check_support(support)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    out_dtype, dtype = _work_dtype(values, support)
    z = support.to(device=values.device, dtype=dtype)
    half = _spacing(z) / 2
    edges = torch.cat([z - half, z[-1:] + half])  # [K + 1]
    v = values.to(dtype).clamp(z[0], z[-1]).unsqueeze(-1)  # [..., 1]
    cdf = torch.special.ndtr((edges - v) / sigma)  # [..., K + 1]
    mass = cdf[..., 1:] - cdf[..., :-1]
    norm = (cdf[..., -1:] - cdf[..., :1]).clamp_min(torch.finfo(dtype).tiny)
    return (mass / norm).to(out_dtype)


def categorical_projection(
    next_probs: Tensor, rewards: Tensor, discounts: Tensor, support: Tensor
) -> Tensor:
    """C51's projection of the distribution r + d·Z' back onto the support.

    Bellemare et al. 2017, "A Distributional Perspective on Reinforcement Learning", Algorithm 1:
    each atom z_j carrying p_j moves to T̂z_j = clip(r + d·z_j, z_0, z_{K-1}), with
    b_j = (T̂z_j − z_0)/Δ, and its mass is split between the neighbours l = ⌊b_j⌋ and l + 1 as
    p_j·(l + 1 − b_j) and p_j·(b_j − l) (d = γⁿ·(1 − done)).

    Edge cases: Algorithm 1 as printed uses u = ⌈b_j⌉ and the weights (u − b_j), (b_j − l), which
    are both 0 when b_j is an integer, dropping the mass. Here l = ⌊b_j⌋ is kept to [0, K−2] and
    u = l + 1, so an exact hit gives weight 1 to its atom (including b_j = K−1 → all on z_{K-1}).
    b_j is clamped to [0, K−1] so that float error (49.99999 or 50.0000001 for K = 51) never
    indexes outside the support; mass is conserved in every case. A terminal transition (d = 0)
    puts all mass where r falls.

    Args:
        next_probs: [..., K] probabilities of the target distribution at s'.
        rewards: [...] (n-step) rewards r.
        discounts: [...] discounts d, usually γⁿ·(1 − done).
        support: [K] evenly spaced atoms.

    Returns:
        [..., K] projected probabilities, dtype of `next_probs` promoted with `support`.
    """
    _check_support(support)
    out_dtype, dtype = _work_dtype(next_probs, support)
    device = next_probs.device
    z = support.to(device=device, dtype=dtype)
    k = z.numel()
    p = next_probs.to(dtype)
    r = rewards.to(device=device, dtype=dtype).unsqueeze(-1)
    d = discounts.to(device=device, dtype=dtype).unsqueeze(-1)
    tz = (r + d * z).clamp(z[0], z[-1])  # [..., K]
    b = ((tz - z[0]) / _spacing(z)).clamp(0, k - 1)
    lower = b.floor().clamp(0, k - 2)
    w_hi = b - lower  # in [0, 1]; 0 on an exact hit of z_l, 1 only at the top atom
    lower = lower.long()
    p, lower = torch.broadcast_tensors(p, lower)
    w_hi = w_hi.expand_as(p)
    out = torch.zeros_like(p)
    out.scatter_add_(-1, lower, p * (1.0 - w_hi))
    out.scatter_add_(-1, lower + 1, p * w_hi)
    return out.to(out_dtype)


def scalar_expectation(probs: Tensor, support: Tensor) -> Tensor:
    """Σ_i p_i z_i over the last axis: the scalar value of a categorical distribution [..., K]."""
    _check_support(support)
    return (probs * support.to(device=probs.device, dtype=probs.dtype)).sum(-1)


def signed_hyperbolic(x: Tensor, eps: float = 1e-3) -> Tensor:
    """h(x) = sign(x)(√(|x| + 1) − 1) + εx, the value rescaling of Pohlen et al. 2018
    ("Observe and Look Further", Sec. 3.2).

    √(|x| + 1) − 1 is computed as |x| / (√(|x| + 1) + 1), the same number without the cancellation
    near 0, so small targets keep their relative precision in float32.
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    ax = x.abs()
    return torch.sign(x) * ax / (torch.sqrt(ax + 1) + 1) + eps * x


def signed_hyperbolic_inverse(y: Tensor, eps: float = 1e-3) -> Tensor:
    """h⁻¹(y) = sign(y)·(((√(1 + 4ε(|y| + 1 + ε)) − 1)/(2ε))² − 1), the closed-form inverse of
    `signed_hyperbolic` (Pohlen et al. 2018, Appendix A, Proposition A.2).

    With s = √(1 + 4ε(|y| + 1 + ε)) and a = (s − 1)/(2ε) = 2(|y| + 1 + ε)/(s + 1), the result is
    sign(y)(a − 1)(a + 1), and since s² = (1 + 2ε)² + 4ε|y|,

        a − 1 = 2|y| (1 − 2ε/(1 + 2ε + s)) / (1 + s),

    an exact rearrangement with no division by ε and no cancellation: it is accurate near 0 in
    float32 and reduces to (|y| + 1)² − 1 at ε = 0. Huge |y| overflow to ±inf, never NaN.
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    ay = y.abs()
    s = torch.sqrt(1 + 4 * eps * (ay + 1 + eps))
    a_minus_1 = 2 * (ay / (1 + s)) * (1 - 2 * eps / (1 + 2 * eps + s))
    return torch.sign(y) * a_minus_1 * (a_minus_1 + 2)
