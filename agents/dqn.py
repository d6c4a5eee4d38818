"""One seed's DQN agent (Mnih et al. 2015) with pluggable value losses: its online and target
networks, its Adam(W) optimiser, its ε schedule and stream, its noise generator, regen's anchors
and its counters. Acting in training and the update (TD targets from the hard-updated target
network, L2, regen, gradient clipping) run for all the seeds of a process at once, in
`agents.group.SeedGroup`; a single-seed run is a group of one."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from agents.checkpoint import NonFiniteError
from agents.losses import Metrics, make_loss
from configs.schema import AgentConfig
from envs import derived_seed
from networks import NoiseSampler, QNetwork
from networks.roles import regularized
from replay import Batch

if TYPE_CHECKING:
    from agents.group import SeedGroup


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
        # Noisy nets: fresh noise for every acting step and every update (Fortunato et al. 2018),
        # from the agent's own generator, so that seeds sharing a process keep their streams;
        # both are no-ops for a network without noisy layers.
        self.seed = seed
        self.noise = torch.Generator(device).manual_seed(seed)
        self.acting_noise = NoiseSampler(self.online, generator=self.noise)
        self.learning_noise = NoiseSampler(self.online, self.target, generator=self.noise)
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
        self.alone: SeedGroup | None = None

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

    def explore(
        self, num_envs: int, epsilon: float, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(which envs act at random, the random actions): ε-greedy's draws, from `rng` or the
        agent's own stream."""
        rng = rng or self.rng
        explore = rng.random(num_envs) < epsilon
        return explore, rng.integers(self.online.head.num_actions, size=num_envs)

    def act(
        self, obs: np.ndarray, epsilon: float, *, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """One action per env. An evaluation passes its own `rng` (evaluating never changes
        training's draws) and acts in eval mode; without one this is a training step of this
        seed alone, as its group acts (agents.group.SeedGroup.act)."""
        if rng is None:
            return self.solo().act(obs[None], [epsilon])[0]
        explore, actions = self.explore(len(obs), epsilon, rng)
        if not explore.all():
            obs_t = torch.from_numpy(obs).to(self.device, non_blocking=True)
            greedy = self.q_values(obs_t).argmax(1).cpu().numpy()
            actions = np.where(explore, actions, greedy)
        return actions

    def update(self, batch: Batch) -> Metrics:
        """One gradient step of this seed alone (tests, benchmarks, the lab): its group of one,
        the code train.py runs."""
        metrics = self.solo().update([batch])[0]
        assert metrics is not None
        return metrics

    def optimise(self, loss: Tensor) -> Metrics:
        """One optimiser step of this seed alone on `loss` (built from `self.online`), with the
        L2 and regen penalties and clipping: SeedGroup.optimise for a group of one."""
        return {name: value[0] for name, value in self.solo().optimise(loss[None]).items()}

    def solo(self) -> SeedGroup:
        """This agent as a group of one (its stacks are views of its own tensors, so it never
        disturbs a larger group the agent belongs to)."""
        from agents.group import SeedGroup  # the group module builds on this one

        if self.alone is None:
            self.alone = SeedGroup([self])
        return self.alone

    def watch(self, td_loss: Tensor) -> None:
        """Keep the latest TD loss, or the first non-finite one (check_finite reads it)."""
        self.loss_watch = torch.where(self.loss_watch.isfinite(), td_loss, self.loss_watch)

    def group_parameters(self, index: int) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) of the optimiser's parameter group `index`."""
        names = {id(p): name for name, p in self.online.named_parameters()}
        return [(names[id(p)], p) for p in self.optimizer.param_groups[index]["params"]]

    def adam_state(self, param: nn.Parameter) -> dict[str, Tensor]:
        """The optimiser's state of `param`, created as torch's fused Adam creates it on its first
        step (zero moments, a float32 step count on the parameter's device)."""
        state = self.optimizer.state[param]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

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
            "noise": self.noise.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
        if "noise" in state:
            self.noise.set_state(state["noise"].cpu())
        else:  # saved before the agent had its own generator: fresh draws, not step 0's again
            self.noise.manual_seed(derived_seed(self.seed, self.updates))
        saved = state.get("anchors", {})
        if isinstance(saved, list):  # saved before anchors had names: every parameter of more
            # than one dimension, in order, was anchored then (norm gains too, dropped below)
            names = [n for n, p in self.online.named_parameters() if p.ndim > 1]
            saved = dict(zip(names, saved, strict=False))
        current = {n for n, _ in self.regularized()}
        self.anchors = {n: a.to(self.device) for n, a in saved.items() if n in current}
        self.anchor_new_parameters()
