"""Noisy linear layers with factorised Gaussian noise (Fortunato et al. 2018, §3, eqs. 9-11).

y = (μ_w + σ_w ⊙ ε_w) x + μ_b + σ_b ⊙ ε_b, with ε_w = f(ε_out) f(ε_in)ᵀ and ε_b = f(ε_out),
ε_in ~ N(0, I_p), ε_out ~ N(0, I_q) and f(x) = sgn(x) √|x|. Initialisation (§3.2, factorised):
μ ~ U[-1/√p, 1/√p], σ = σ₀/√p.

The noise lives in (non-persistent) buffers and is drawn only by `resample`. In eval mode
(`module.eval()`) the layer is its mean, y = μ_w x + μ_b, as Dopamine's `NoisyNetwork` with
`eval_mode=True` (dopamine/jax/networks.py): evaluation phases, evaluate.py, videos and the probes
(which measure in eval mode) are deterministic functions of the saved parameters. Training acts
and learns in train mode, with the sample last drawn.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def scaled_noise(
    size: int, *, device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """f(ε) = sgn(ε) √|ε| for ε ~ N(0, I) (Fortunato et al. 2018, eq. 11), drawn from
    `generator` (torch's default one when None)."""
    x = torch.randn(size, device=device, generator=generator)
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    """A linear layer whose weights are μ + σ ⊙ ε with factorised Gaussian ε.

    Args:
        in_features, out_features: p and q.
        sigma0: σ₀; every σ starts at σ₀/√p (0 gives a plain linear layer with this init).
    """

    def __init__(self, in_features: int, out_features: int, *, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features, self.out_features, self.sigma0 = in_features, out_features, sigma0
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("eps_in", torch.zeros(in_features), persistent=False)
        self.register_buffer("eps_out", torch.zeros(out_features), persistent=False)
        self.reset_parameters()
        self.resample()

    def reset_parameters(self) -> None:
        """μ ~ U[-1/√p, 1/√p], σ = σ₀/√p (Fortunato et al. 2018, §3.2); the noise is untouched."""
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight_mu.uniform_(-bound, bound)
            self.bias_mu.uniform_(-bound, bound)
            self.weight_sigma.fill_(self.sigma0 * bound)
            self.bias_sigma.fill_(self.sigma0 * bound)

    @torch.no_grad()
    def resample(self, generator: torch.Generator | None = None) -> None:
        """Draw new ε_in and ε_out from `generator` (torch's default one when None), on the
        layer's device: no host sync."""
        device = self.eps_in.device
        self.eps_in.copy_(scaled_noise(self.in_features, device=device, generator=generator))
        self.eps_out.copy_(scaled_noise(self.out_features, device=device, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:  # the mean network, as Dopamine's eval_mode sets ε to zero
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)
        bias = self.bias_mu + self.bias_sigma * self.eps_out
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " + (
            f"sigma0={self.sigma0}"
        )


class NoiseSampler:
    """Resamples every noisy layer of some networks at once, from its own `generator` (so that
    seeds trained in one process keep their own noise streams); a no-op for networks without
    any. `refresh` finds the layers again after a change of structure (an injected head)."""

    def __init__(self, *networks: nn.Module, generator: torch.Generator | None = None) -> None:
        self.networks = networks
        self.generator = generator
        self.refresh()

    def refresh(self) -> None:
        self.layers = [m for n in self.networks for m in n.modules() if isinstance(m, NoisyLinear)]

    def resample(self) -> None:
        for layer in self.layers:
            layer.resample(self.generator)
