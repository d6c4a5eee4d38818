"""Plasticity probes: pure metrics on any torch module, observed through forward hooks."""

from __future__ import annotations

from probes.fit import probe_fit_loss
from probes.metrics import (
    condition_number,
    dormant_mask,
    dormant_scores,
    effective_rank,
    linearized_mask,
    numerical_rank,
    per_unit_mean,
    srank,
)
from probes.observe import NONLINEARITIES, measure

__all__ = [
    "NONLINEARITIES",
    "condition_number",
    "dormant_mask",
    "dormant_scores",
    "effective_rank",
    "linearized_mask",
    "measure",
    "numerical_rank",
    "per_unit_mean",
    "probe_fit_loss",
    "srank",
]
