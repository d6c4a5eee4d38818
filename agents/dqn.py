"""The DQN learning rule (Mnih et al. 2015) with pluggable value losses: ε-greedy acting batched
over vector envs, TD targets from a hard-updated target network, Adam(W), optional L2 and
gradient clipping. The agent owns the online and target networks and the optimiser."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import Tensor, nn

from agents.checkpoint import NonFiniteError
from agents.losses import Metrics, make_loss
from configs.schema import AgentConfig
from interventions.regen import regen_penalty
from networks import NoiseSampler, QNetwork
from networks.roles import regularized
from replay import Batch


def linear_epsilon(step: int, *, start: float, end: float, decay_steps: int, warmup: int) -> float:
    """ε held at `start` during the warm-up, then linear to `end` over `decay_steps` (Dopamine's
    linearly_decaying_epsilon)."""
    progress = min(max(step - warmup, 0) / decay_steps, 1.0)
    return end + (1.0 - progress) * (start - end)


def make_optimizer(network: nn.Module, config: AgentConfig) -> torch.optim.Optimizer:
    """Adam, or AdamW (decoupled weight decay on the regularized parameters only) when
    weight_decay > 0. Fused kernels: on 2 CPU cores they step the Nature CNN ~10x faster."""
    if config.weight_decay == 0:
        return torch.optim.Adam(network.parameters(), lr=config.lr, eps=config.adam_eps, fused=True)
    decayed = {id(p) for _, p in regularized(network, config.regularize)}
    groups = [
        {"params": [p for p in network.parameters() if id(p) in decayed]},
        {"params": [p for p in network.parameters() if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=config.lr, eps=config.adam_eps, weight_decay=config.weight_decay, fused=True
    )


class DQNAgent:
    """Acts ε-greedily and learns from replay batches."""

    def __init__(
        self,
        network: QNetwork,
        config: AgentConfig,
        *,
        device: torch.device,
        seed: int,
        pin_memory: bool = False,
        compile: bool = False,
        amp: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.config = config
        self.device = device
        self.online = network.to(device)
        if channels_last:
            self.online.use_channels_last()
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        # Compiled callables share the modules' parameters; probes and checkpoints use the modules.
        self.online_fn = torch.compile(self.online) if compile else self.online
        self.target_fn = torch.compile(self.target) if compile else self.target
        self.pin_memory = pin_memory
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
        self.loss = make_loss(config, getattr(self.online.head, "support", None))
        # Noisy nets: fresh noise for every acting step and every update (Fortunato et al. 2018);
        # both are no-ops for a network without noisy layers.
        self.acting_noise = NoiseSampler(self.online)
        self.learning_noise = NoiseSampler(self.online, self.target)
        self.priorities = torch.zeros(0, device=device)
        """Per-sample priorities of the latest update (on the device), for a prioritized replay."""
        self.optimizer = make_optimizer(self.online, config)
        # Regenerative regularisation pulls the regularized parameters toward their initial
        # values: θ⁰ by parameter name, taken when a parameter is first seen (at build time, or
        # for an injected head when it appears), so a new head is anchored at its own draw.
        self.anchors: dict[str, Tensor] = {}
        self.anchor_new_parameters()
        self.rng = np.random.default_rng(seed)
        self.updates = 0
        # The latest TD loss, or the first non-finite one, kept on the device: updates never sync
        # with the host for it; `check_finite` reads it on log and checkpoint boundaries.
        self.loss_watch = torch.zeros((), device=device)
        self.checked_step = 0

    def epsilon(self, step: int) -> float:
        c = self.config
        return linear_epsilon(
            step,
            start=c.epsilon_start,
            end=c.epsilon_end,
            decay_steps=c.epsilon_decay_steps,
            warmup=c.learning_starts,
        )

    @torch.inference_mode()
    def q_values(self, obs: Tensor) -> Tensor:
        """Q(s, ·) in reward units, [B, A]."""
        with self.autocast:
            output = self.online_fn(obs)
        return self.loss.q_values(output.float())

    def act(
        self, obs: np.ndarray, epsilon: float, *, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """One action per env: greedy from one batched forward pass, random with probability ε.
        An evaluation passes its own `rng`, so that evaluating never changes training's draws."""
        if rng is None:  # training acts with fresh noise; an evaluation acts in eval mode
            self.acting_noise.resample()
        rng = rng or self.rng
        num_envs, num_actions = len(obs), self.online.head.num_actions
        explore = rng.random(num_envs) < epsilon
        actions = rng.integers(num_actions, size=num_envs)
        if not explore.all():
            obs_t = torch.from_numpy(obs).to(self.device, non_blocking=True)
            greedy = self.q_values(obs_t).argmax(1).cpu().numpy()
            actions = np.where(explore, actions, greedy)
        return actions

    def update(self, batch: Batch) -> Metrics:
        """One gradient step on a replay batch; returns detached metric tensors (no host sync)."""
        batch = (batch.pin_memory() if self.pin_memory else batch).to(
            self.device, non_blocking=True
        )
        rows = torch.arange(len(batch.action), device=self.device)
        self.learning_noise.resample()
        with self.autocast:
            output = self.online_fn(batch.obs).float()
            with torch.no_grad():
                next_target = self.target_fn(batch.next_obs).float()
                chooser = (
                    self.online_fn(batch.next_obs).float() if self.config.double else next_target
                )
        taken = output[rows, batch.action]  # [B] or [B, K]
        next_action = self.loss.q_values(chooser).argmax(1)  # a* = argmax_a Q(s', a)
        next_taken = next_target[rows, next_action]
        per_sample, metrics = self.loss(taken, next_taken, batch.reward, batch.discount)
        # importance-sampling weights; 1 when uniform
        metrics.update(self.optimise((batch.weight * per_sample).mean()))
        self.priorities = self.loss.priority(per_sample)
        q = self.loss.q_values(output.detach())
        td_loss = per_sample.detach().mean()
        self.loss_watch = torch.where(self.loss_watch.isfinite(), td_loss, self.loss_watch)
        return {
            "td_loss": td_loss,
            "q_values": q.mean(),
            "q_max": q.max(),
            **{k: v.detach() for k, v in metrics.items()},
        }

    def optimise(self, loss: Tensor) -> Metrics:
        """One optimiser step on `loss` plus the L2 and regen penalties, with the gradient clipped
        when that is set (the lab fits its targets through this too). Returns the gradient norm,
        and regen's distance when regen is on."""
        metrics, c = {}, self.config
        named = self.regularized() if c.l2 > 0 or c.regen > 0 else []  # one walk per step
        if c.l2 > 0:
            loss = loss + c.l2 * sum(p.square().sum() for _, p in named)
        if c.regen > 0:
            self.anchor_new_parameters(named)
            distance = regen_penalty([p for _, p in named], [self.anchors[n] for n, _ in named])
            loss = loss + c.regen * distance
            metrics["interventions/regen"] = distance
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics["grad_norm"] = self.gradient_norm()
        self.optimizer.step()
        self.updates += 1
        return metrics

    def regularized(self) -> list[tuple[str, nn.Parameter]]:
        """The online parameters L2 and regen act on now (networks.roles): read at every step, so
        a head that an intervention adds (inject) is covered and a frozen one is not."""
        return list(regularized(self.online, self.config.regularize))

    def anchor_new_parameters(self, named: list[tuple[str, nn.Parameter]] | None = None) -> None:
        """θ⁰ for every regularized parameter (`named`, default read now) without one yet, and
        none for a parameter no longer regularized (a head frozen by inject); a no-op without
        regen, and without a change of structure since the last call."""
        if self.config.regen == 0:
            return
        named = self.regularized() if named is None else named
        if len(named) == len(self.anchors) and all(n in self.anchors for n, _ in named):
            return
        self.anchors = {
            name: self.anchors[name] if name in self.anchors else param.detach().clone()
            for name, param in named
        }

    def gradient_norm(self) -> Tensor:
        """The gradient's global L2 norm, after clipping it to max_grad_norm when that is set.
        Without clipping the norm is only measured: clip_grad_norm_ would still rescale every
        gradient by min(1, inf) = 1, a pass over all parameters for nothing."""
        if self.config.max_grad_norm > 0:
            return nn.utils.clip_grad_norm_(self.online.parameters(), self.config.max_grad_norm)
        grads = [p.grad for p in self.online.parameters() if p.grad is not None]
        return nn.utils.get_total_norm(grads)

    def check_finite(self, step: int) -> None:
        """Stop a diverged run before it logs, probes or saves NaN: raise NonFiniteError when a TD
        loss since the last check, or an online parameter, is NaN or Inf. One host sync, so it is
        called on log and checkpoint boundaries, not per update."""
        found = self.nonfinite()
        if found:
            name, value = found
            raise NonFiniteError(
                f"{name} is {value} at step {step} (update {self.updates}; all finite at the "
                f"previous check, step {self.checked_step}). Training diverged and stopped; the "
                "last good checkpoint is kept. Lower agent.lr or set agent.max_grad_norm."
            )
        self.checked_step = step

    def nonfinite(self) -> tuple[str, float] | None:
        """(quantity, value) of the first NaN or Inf: the TD loss, then the online parameters."""
        loss = float(self.loss_watch)
        if not math.isfinite(loss):
            return "td_loss", loss
        params = dict(self.online.named_parameters())
        if bool(torch.stack([p.isfinite().all() for p in params.values()]).all()):
            return None
        name, p = next((n, p) for n, p in params.items() if not bool(p.isfinite().all()))
        return f"parameter {name}", float(p[~p.isfinite()].flatten()[0])

    def sync_target(self) -> None:
        """Hard update: θ̄ ← θ."""
        self.target.load_state_dict(self.online.state_dict())

    def state_dict(self) -> dict:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "rng": self.rng.bit_generator.state,
            "anchors": self.anchors,  # regen's θ⁰ by parameter name ({} without regen)
        }

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
        saved = state.get("anchors", {})
        if isinstance(saved, list):  # saved before anchors had names: every parameter of more
            # than one dimension, in order, was anchored then (norm gains too, dropped below)
            names = [n for n, p in self.online.named_parameters() if p.ndim > 1]
            saved = dict(zip(names, saved, strict=False))
        current = {n for n, _ in self.regularized()}
        self.anchors = {n: a.to(self.device) for n, a in saved.items() if n in current}
        self.anchor_new_parameters()
