"""When the training loop measures the probes, and on which states."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from configs.schema import ProbeConfig
from probes.fit import probe_fit_loss
from probes.observe import measure
from replay import ReplayBuffer

BASELINE = "plasticity_baseline/"
"""Tag prefix of the initial network's figures on each probe batch, logged at the step the batch
is first used: a probe's change is read against the baseline of the batch it was measured on."""

UPDATE_BATCH = "plasticity_update_batch/"
"""Tag prefix of the second, clearly separate probe set: the same unit and feature figures measured
on the states of the latest update's batch (what the network is trained on now, with the
duplicates uniform replay sampling gives), as ReDo scores dormancy (Sokar et al. 2023) and
Plasticine measures its metrics on the current batch. It tracks the data as well as the network,
so it is not comparable over time the way the fixed batch's `plasticity/` figures are."""
UPDATE_BATCH_KEYS = (
    "dormant_fraction",
    "dead_fraction",
    "redo_dormant_fraction",
    "linearized_fraction",
    "preact_mean",
    "preact_std",
    "feature_norm",
    "feature_rank",
    "effective_rank",
)
"""Whole-network figures that depend on the states (not param_norm) and need no NTK."""

DRAW_ROUNDS = 8
"""Uniform draws of twice the batch that `distinct_states` makes before it settles for fewer."""


def crossed(interval: int, before: int, now: int) -> bool:
    """True when a multiple of `interval` lies in (before, now]."""
    return interval > 0 and now // interval > before // interval


def distinct_states(replay: ReplayBuffer, size: int, rng: np.random.Generator) -> Tensor:
    """Up to `size` distinct observations from `replay`, in the order first drawn.

    Draws uniformly (whatever the buffer's own rule) and keeps each state the first time its bytes
    are seen, so no state appears twice: a game's opening frames, which every episode repeats,
    count once. That is a draw without replacement among the buffer's distinct states, each
    weighted by how often it is stored. Fewer than `size` only when `DRAW_ROUNDS` draws of 2·size
    found no more (a buffer of very few distinct states)."""
    kept: list[Tensor] = []
    seen: set[bytes] = set()
    for _ in range(DRAW_ROUNDS):
        for obs in replay.sample(2 * size, rng=rng, uniform=True).obs:
            key = obs.numpy().tobytes()
            if key not in seen:
                seen.add(key)
                kept.append(obs)
                if len(kept) == size:
                    return torch.stack(kept)
    return torch.stack(kept)


class ProbeSchedule:
    """The probes of a training run: a fixed batch of distinct replay states, drawn once learning
    starts (from the whole warm-up buffer) and again every `refresh_interval` steps; `measure`
    every `interval` steps and the costlier `probe_fit_loss` every `fit_interval` steps.

    A copy of the network as initialised is kept for the whole run: on every batch drawn it is
    measured too, and those figures are the batch's baseline (`BASELINE`; the first batch's are
    also the probes at step 0). The batch, its draw step, the generator and the initial network
    are in `state_dict`, so a resumed run measures the very states an uninterrupted one would.
    Drawing uses the schedule's own generator: probing never changes what the agent trains on.

    Args:
        initial: the network as initialised (copied here).
        redo_tau: ReDo's own τ when the run recycles units, logged beside the probes' τ.
    """

    def __init__(
        self,
        config: ProbeConfig,
        *,
        seed: int,
        initial: nn.Module,
        redo_tau: float | None = None,
    ) -> None:
        self.config, self.seed, self.redo_tau = config, seed, redo_tau
        self.initial = copy.deepcopy(initial)  # trainable: the NTK and the fit need gradients
        self.rng = np.random.default_rng(seed)
        self.batch: Tensor | None = None
        self.drawn_at = 0

    def measurements(
        self,
        model: nn.Module,
        replay: ReplayBuffer,
        before: int,
        now: int,
        *,
        update_batch: Tensor | None = None,
    ) -> list[tuple[str, int, dict[str, float]]]:
        """(tag prefix, step, figures) to log for the steps (before, now]: when a batch is drawn,
        the initial network's figures on it first, then `model`'s probes if due, and then, when
        the latest update's observations `update_batch` are given, the `UPDATE_BATCH` set on
        them. The training loop calls this from agent.learning_starts on (also while a resumed
        run refills its replay buffer: the saved batch needs none)."""
        c = self.config
        due, fit_due = crossed(c.interval, before, now), crossed(c.fit_interval, before, now)
        first = self.batch is None
        stale = (due or fit_due) and now - self.drawn_at >= c.refresh_interval
        if not c.enabled or ((first or stale) and not replay.can_sample(c.batch_size)):
            return []  # a batch is due but replay cannot give it yet
        logs = []
        if first or stale:
            baseline = self.draw(replay, now, device=next(model.parameters()).device)
            # The first batch's baseline is also the probes' value at step 0.
            logs += [("plasticity/", 0, baseline)] if first else []
            logs.append((BASELINE, 0 if first else now, baseline))
        if due or fit_due:
            logs.append(("plasticity/", now, self.figures(model, probes=due, fit=fit_due)))
        if due and update_batch is not None:
            logs.append((UPDATE_BATCH, now, self.on_update_batch(model, update_batch)))
        return logs

    def on_update_batch(self, model: nn.Module, states: Tensor) -> dict[str, float]:
        """The `UPDATE_BATCH_KEYS` figures of `model` on an update's states (no NTK: the
        fixed batch carries it)."""
        device = next(model.parameters()).device
        c = self.config
        figures = measure(
            model, states.to(device), tau=c.dormant_tau, redo_tau=self.redo_tau, ntk_batch=0
        )
        return {k: figures[k] for k in UPDATE_BATCH_KEYS if k in figures}

    def draw(self, replay: ReplayBuffer, now: int, *, device: torch.device) -> dict[str, float]:
        """A new probe batch of distinct states, and the initial network's figures on it."""
        self.batch = distinct_states(replay, self.config.batch_size, self.rng).to(device)
        self.drawn_at = now
        return self.figures(self.initial, probes=True, fit=self.config.fit_interval > 0)

    def figures(self, model: nn.Module, *, probes: bool, fit: bool) -> dict[str, float]:
        """The probe figures of `model` on the batch (and probe_fit_loss if `fit`)."""
        c = self.config
        # A distributional head's NTK is taken on its Q-values: A outputs, not A·K logits.
        readout = getattr(model, "q_values", None)
        figures = {}
        if probes:
            figures = measure(
                model,
                self.batch,
                tau=c.dormant_tau,
                redo_tau=self.redo_tau,
                ntk_batch=c.ntk_batch,
                ntk_readout=readout,
            )
        if fit:
            figures["probe_fit_loss"] = probe_fit_loss(
                model, self.batch, steps=c.fit_steps, seed=self.seed
            )
        return figures

    def state_dict(self) -> dict:
        """What a resume needs to measure the same states: batch (on the CPU, stored dtype), draw
        step, generator, and the initial network. About 14 MB for Atari's 256 Nature-CNN stacks
        (7.2 MB of uint8 frames, 6.7 MB of initial weights)."""
        return {
            "batch": None if self.batch is None else self.batch.cpu(),
            "drawn_at": self.drawn_at,
            "rng": self.rng.bit_generator.state,
            "initial": self.initial.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        device = next(self.initial.parameters()).device
        self.batch = None if state["batch"] is None else state["batch"].to(device)
        self.drawn_at = int(state["drawn_at"])
        self.rng.bit_generator.state = state["rng"]
        self.initial.load_state_dict(state["initial"])
