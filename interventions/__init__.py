"""Interventions: resets and other mid-training changes to a network and its optimiser state.

`Interventions` is built from the config, the network and its optimiser; the training loop (or
the lab) calls `after_update(updates, obs)` after every optimiser step, and logs what it returns
under `interventions/<name>`. Each intervention is a small function with its formula and source:
ReDo (`redo.recycle`), shrink-and-perturb and last-layer resets (`resets`), plasticity injection
(`inject`); regenerative regularisation is a loss term (`regen.regen_penalty`), and CReLU a
nonlinearity (`networks.CReLU`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from configs.schema import (
    InterventionConfig,
    RedoConfig,
    ResetHeadConfig,
    ShrinkPerturbConfig,
)
from envs import derived_seed
from interventions.inject import InjectedHead, inject, is_injected
from interventions.redo import recycle
from interventions.regen import regen_penalty
from interventions.resets import FreshDraws, reset_last_layers, shrink_perturb

__all__ = ["InjectedHead", "Interventions", "regen_penalty"]


def due(schedule: RedoConfig | ResetHeadConfig | ShrinkPerturbConfig, updates: int) -> bool:
    """Whether an enabled periodic intervention is due: every `interval` updates, the first at
    update `interval`."""
    return schedule.enabled and updates % schedule.interval == 0


class Interventions:
    """The scheduled interventions of a run, on `network` and its `optimizer`.

    Schedules count optimiser updates. New initialisations are drawn with seeds mixed from
    (`seed`, update, intervention), so a resumed run draws what an uninterrupted one would.

    Args:
        mirrors: networks that copy `network`'s structure (a target network): they get the same
            injected head, so that loading the online weights into them keeps working.
    """

    def __init__(
        self,
        config: InterventionConfig,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        seed: int,
        mirrors: Sequence[nn.Module] = (),
    ) -> None:
        self.config, self.network, self.optimizer = config, network, optimizer
        self.seed, self.mirrors = seed, list(mirrors)
        self.fresh = FreshDraws(network)
        self.injected = False

    def after_update(self, updates: int, obs: Tensor) -> dict[str, float]:
        """Apply the interventions due after optimiser update number `updates` (counted from 1);
        `obs` is the update's batch of observations (ReDo scores units on it).

        Returns:
            {name: units or parameters touched} for the interventions that happened; {} if none.
        """
        c, events = self.config, {}
        if due(c.redo, updates):
            device = next(self.network.parameters()).device
            fresh = self.fresh.draw(derived_seed(self.seed, updates, 1))
            events["redo"] = recycle(
                self.network, self.optimizer, obs.to(device), fresh, tau=c.redo.tau
            )
        if due(c.reset_head, updates):
            fresh = self.fresh.draw(derived_seed(self.seed, updates, 2))
            layers = c.reset_head.layers
            events["reset_head"] = reset_last_layers(
                self.network, self.optimizer, fresh, layers=layers
            )
        if due(c.shrink_perturb, updates):
            sp = c.shrink_perturb
            fresh = self.fresh.draw(derived_seed(self.seed, updates, 3))
            events["shrink_perturb"] = shrink_perturb(
                self.network, fresh, shrink=sp.shrink, perturb=sp.perturb
            )
        if c.inject.enabled and updates >= c.inject.at and not self.injected:
            events["inject"] = self.inject()
        return {name: float(amount) for name, amount in events.items()}

    def inject(self) -> int:
        self.injected = True
        networks = [self.network, *self.mirrors]
        return inject(networks, self.optimizer, seed=derived_seed(self.seed, 4))

    def restore(self, network_state: dict) -> None:
        """Rebuild the structure a saved network had (an injected head) before its state, and the
        optimiser's, are loaded: a resumed run, evaluate.py and the probes see the network that
        acted. The injected values come from the state; the draw here only shapes them."""
        if is_injected(network_state) and not self.injected:
            self.inject()
