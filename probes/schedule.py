"""When the training loop measures the probes, and on which states."""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from configs.schema import ProbeConfig
from probes.fit import probe_fit_loss
from probes.observe import measure
from replay import ReplayBuffer


def crossed(interval: int, before: int, now: int) -> bool:
    """True when a multiple of `interval` lies in (before, now]."""
    return interval > 0 and now // interval > before // interval


class ProbeSchedule:
    """A fixed probe batch drawn from replay (redrawn every `refresh_interval` steps); `measure`
    every `interval` steps and the costlier `probe_fit_loss` every `fit_interval` steps. The batch
    is drawn with the schedule's own generator: probing never changes what the agent trains on."""

    def __init__(self, config: ProbeConfig, *, seed: int, redo_tau: float | None = None) -> None:
        self.config = config
        self.seed = seed
        self.redo_tau = redo_tau  # ReDo's own τ when the run recycles units: logged beside
        self.rng = np.random.default_rng(seed)
        self.batch: Tensor | None = None
        self.drawn_at = 0

    def maybe_measure(self, model: nn.Module, replay: ReplayBuffer, before: int, now: int) -> dict:
        """The probe figures due for the steps (before, now]; {} when none are."""
        c = self.config
        due = crossed(c.interval, before, now)
        fit_due = crossed(c.fit_interval, before, now)
        if not (due or fit_due) or not self.ready(replay):
            return {}
        return self.measure_now(model, replay, now, fit=fit_due, probes=due)

    def ready(self, replay: ReplayBuffer) -> bool:
        """Whether probes are on and replay can give the probe batch."""
        return self.config.enabled and replay.can_sample(self.config.batch_size)

    def measure_now(
        self, model: nn.Module, replay: ReplayBuffer, now: int, *, fit: bool, probes: bool = True
    ) -> dict:
        """The probe figures (and probe_fit_loss if `fit`) of `model` on the probe batch, drawn
        anew when none is held or it is `refresh_interval` steps old. The step-0 baseline is
        this on the network as initialised, on the first probe batch that later probes reuse."""
        c = self.config
        if self.batch is None or now - self.drawn_at >= c.refresh_interval:
            device = next(model.parameters()).device
            batch = replay.sample(c.batch_size, rng=self.rng, uniform=True)
            self.batch = batch.obs.to(device)
            self.drawn_at = now
        # A distributional head's NTK is taken on its Q-values: A outputs, not A·K logits.
        readout = getattr(model, "q_values", None)
        figures = (
            measure(
                model,
                self.batch,
                tau=c.dormant_tau,
                redo_tau=self.redo_tau,
                ntk_batch=c.ntk_batch,
                ntk_readout=readout,
            )
            if probes
            else {}
        )
        if fit:
            figures["probe_fit_loss"] = probe_fit_loss(
                model, self.batch, steps=c.fit_steps, seed=self.seed
            )
        return figures
