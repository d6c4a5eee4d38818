"""ReDo: recycle τ-dormant units (Sokar et al. 2023, "The Dormant Neuron Phenomenon in Deep
Reinforcement Learning", Algorithm 1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from interventions.resets import AFFINE, zero_moments
from probes.metrics import dormant_mask, per_unit_mean
from probes.observe import NONLINEARITIES, eval_mode


@dataclass
class Site:
    """One hidden nonlinearity as the forward pass met it: the affine layer feeding it (with any
    normalisation between them), E|a_i| of each of its output units, and the affine layers that
    read its output before the next nonlinearity (both streams of a dueling head, say)."""

    incoming: str
    norms: list[str]
    mean_abs: Tensor
    outgoing: list[str] = field(default_factory=list)


def trace(network: nn.Module, obs: Tensor) -> list[Site]:
    """One no-grad forward pass in eval mode that records, in call order, every affine layer,
    normalisation and nonlinearity module; the network is left as found."""
    events: list[tuple[str, str, Tensor | None]] = []

    def hook(name: str, kind: str):
        def record(module: nn.Module, args: tuple, output: Tensor) -> None:
            events.append((kind, name, per_unit_mean(output.abs()) if kind == "act" else None))

        return record

    handles = []
    for name, module in network.named_modules():
        if isinstance(module, NONLINEARITIES):
            kind = "act"
        elif isinstance(module, AFFINE):
            kind = "affine"
        elif list(module.parameters(recurse=False)) and not list(module.children()):
            kind = "norm"
        else:
            continue
        handles.append(module.register_forward_hook(hook(name, kind)))
    try:
        with eval_mode(network), torch.no_grad():
            network(obs)
    finally:
        for handle in handles:
            handle.remove()
    return sites(events)


def sites(events: list[tuple[str, str, Tensor | None]]) -> list[Site]:
    """Group the recorded calls into `Site`s; a nonlinearity with no affine layer before it, or
    none reading it, has nothing to recycle and is left out."""
    found: list[Site] = []
    incoming, norms, open_site = None, [], None
    for kind, name, mean_abs in events:
        if kind == "affine":
            if open_site is not None:
                open_site.outgoing.append(name)
            incoming, norms = name, []
        elif kind == "norm":
            norms.append(name)
        elif incoming is not None:  # a nonlinearity fed by an affine layer
            open_site = Site(incoming, norms, mean_abs)
            found.append(open_site)
            incoming, norms = None, []
    return [site for site in found if site.outgoing]


@torch.no_grad()
def recycle(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    obs: Tensor,
    fresh: dict[str, Tensor],
    *,
    tau: float,
) -> int:
    """Recycle every hidden unit whose ReDo score s_i = E|a_i| / (mean_k E|a_k| + 1e-9) on `obs`
    is ≤ τ (eq. 1; `probes.metrics.dormant_mask`): its incoming weights and bias (and its
    normalisation's gain and offset) get their values from `fresh`, a new initialisation; its
    outgoing weights are set to 0, so the network's output is unchanged by the recycling (up to
    a LayerNorm's statistics over the layer); Adam's moments of all those entries are zeroed.

    A CReLU unit feeds two outputs, [relu(z), relu(−z)]: it is recycled when both are dormant.
    An outgoing layer after Flatten reads each conv channel at H·W positions (channel-major).

    Returns:
        the number of units recycled.
    """
    modules = dict(network.named_modules())
    recycled = 0
    for site in trace(network, obs):
        outputs = dormant_mask(site.mean_abs, tau)  # [k · units], k outputs per unit
        units = next(modules[site.incoming].parameters()).shape[0]
        rows = outputs.view(-1, units).all(0)
        if not rows.any():
            continue
        for name in [site.incoming, *site.norms]:
            for leaf, p in modules[name].named_parameters(recurse=False):
                p[rows] = fresh[f"{name}.{leaf}"][rows].to(p.dtype)
                zero_moments(optimizer, p, (rows,))
        columns = rows.repeat(outputs.numel() // units)
        for name in site.outgoing:
            zero_outgoing(modules[name], optimizer, columns)
        recycled += int(rows.sum())
    return recycled


def zero_outgoing(layer: nn.Module, optimizer: torch.optim.Optimizer, columns: Tensor) -> None:
    """Zero the input columns `columns` of every weight of `layer` (and their Adam moments); a
    layer reading a flattened conv map has H·W columns per channel."""
    for p in layer.parameters(recurse=False):
        if p.ndim < 2:
            continue
        index = (slice(None), columns.repeat_interleave(p.shape[1] // columns.numel()))
        p[index] = 0.0
        zero_moments(optimizer, p, index)
