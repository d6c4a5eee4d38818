"""Nonlinearities beyond ReLU, as modules (probes hook them like any other)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class CReLU(nn.ReLU):
    """Concatenated ReLU, [relu(z), relu(−z)] along the unit dimension (features of [B, F],
    channels of [B, C, H, W]): 2 outputs per unit, and no unit is ever silent on every input
    (Shang et al. 2016; Abbas et al. 2023, "Loss of Plasticity in Continual Deep RL", §5).

    A subclass of nn.ReLU, so the probes hook it: a unit's preactivation is its input, its
    outputs are the 2C columns (the dormant fraction counts those).
    """

    expansion = 2
    """Outputs per preactivation unit: the next layer reads twice the width."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([super().forward(x), super().forward(-x)], dim=1)


CRELU_WIDTH = 1 / math.sqrt(2)
"""Hidden widths under CReLU: a layer of width w·n fed by a CReLU of width w·m has 2w²·m·n
weights, so w = 1/√2 keeps the middle layers' parameter count, and the network's overall to
within a few percent (README)."""


def expansion(activation: type[nn.Module]) -> int:
    """Outputs per unit of a nonlinearity class (1 for ReLU and the other elementwise ones)."""
    return getattr(activation, "expansion", 1)
