"""Seeds as a batch dimension: K agents of one config (one per seed) acting and learning as one
computation. Each member is an ordinary `DQNAgent` (its networks, optimiser, ε stream, noise
generator, regen anchors, counters, checkpoint state); the group stacks their networks
(`networks.stacked`) and runs, for all of them at once, the acting forward and the update: one
forward, one backward and one fused Adam step. K = 1 is the same code (a single-seed run is a
group of one).

An update round may leave members out (a member whose env just reset owes no update at that
step): their loss is weighted 0 and their parameters, moments and step counts are not touched,
so every member follows its single-seed run, up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.linalg import vector_norm
from torch.optim import adam

from agents.dqn import DQNAgent
from agents.losses import Metrics
from networks.stacked import Stacked
from replay import Batch


def stack_batches(batches: Sequence[Batch]) -> Batch:
    """One [K, B, ...] batch from K members' [B, ...] batches (`index` stays per member; one
    member's is a view, not a copy)."""
    fields = ("obs", "action", "reward", "discount", "next_obs", "weight")
    if len(batches) == 1:
        return Batch(*(getattr(batches[0], f).unsqueeze(0) for f in fields))
    return Batch(*(torch.stack([getattr(b, f) for b in batches]) for f in fields))


def member_sums(tensors: Sequence[Tensor]) -> Tensor:
    """Σ over each tensor's non-member axes, summed over tensors: [K] (0 when none)."""
    return sum((per_member(t) for t in tensors), torch.zeros(()))


def per_member(t: Tensor) -> Tensor:
    """Σ over the non-member axes of a [K, ...] tensor: [K] (a [K] tensor as it is; `sum` over
    an empty tuple of axes would sum them all)."""
    return t if t.ndim == 1 else t.sum(tuple(range(1, t.ndim)))


def l2_penalties(params: Sequence[Tensor]) -> Tensor:
    """Σ_i ‖θ_i‖² per member: [K] from [K, ...] stacks."""
    return member_sums([p.square() for p in params])


def regen_penalties(params: Sequence[Tensor], anchors: Sequence[Tensor]) -> Tensor:
    """Σ_i ‖θ_i − θ_i⁰‖² per member (Kumar et al. 2023's regenerative regularisation; see
    interventions.regen): [K] from [K, ...] stacks."""
    return member_sums([(p - a).square() for p, a in zip(params, anchors, strict=True)])


def clip_member_grads(grads: Sequence[Tensor], max_norm: float) -> Tensor:
    """Each member's global gradient norm ‖g_k‖ = √(Σ_i ‖g_{k,i}‖²) [K], after scaling member k's
    gradients by min(1, max_norm / (‖g_k‖ + 1e-6)) when max_norm > 0: torch's clip_grad_norm_
    per member."""
    if grads and len(grads[0]) == 1:  # one member: torch's fused norm, as a plain network's
        norms = nn.utils.get_total_norm([g[0] for g in grads]).reshape(1)
    else:  # every stacked gradient has a member axis and at least one more
        norms = member_sums([vector_norm(g, dim=tuple(range(1, g.ndim))).square() for g in grads])
        norms = norms.sqrt()
    if max_norm > 0:
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.ndim - 1)))
    return norms


class SeedGroup:
    """K agents of one config trained as one computation (see the module docstring)."""

    def __init__(self, members: Sequence[DQNAgent]) -> None:
        self.members = list(members)
        first = self.members[0]
        self.config, self.device, self.loss = first.config, first.device, first.loss
        self.autocast = first.autocast
        alone = len(self.members) == 1  # torch.compile (train.compile) is for one seed
        self.online = Stacked(
            [m.online for m in self.members], single=first.online_fn if alone else None
        )
        self.target = Stacked(
            [m.target for m in self.members], single=first.target_fn if alone else None
        )
        self.anchor_stack: dict[str, Tensor] = {}
        self.regularized_names: list[str] | None = None
        self.grids: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self.adam_lists: dict[tuple[int, ...], list[tuple[list[str], list[list[Tensor]]]]] = {}

    def __len__(self) -> int:
        return len(self.members)

    def restack(self) -> None:
        """After a change of a member's structure or tensors (an injected head, a load)."""
        self.online.restack()
        self.target.restack()
        for m in self.members:
            m.acting_noise.refresh()
            m.learning_noise.refresh()
        self.anchor_stack = {}
        self.adam_lists = {}
        self.regularized_names = None

    def act(self, obs: np.ndarray, epsilons: Sequence[float]) -> np.ndarray:
        """[K, E] actions for [K, E, ...] observations: each member draws its ε-greedy choices
        from its own stream, as its single-seed run would, and the greedy ones come from one
        forward pass over every member's observations."""
        envs = obs.shape[1]
        explore = np.empty((len(self.members), envs), dtype=bool)
        actions = np.empty((len(self.members), envs), dtype=np.int64)
        for k, (member, epsilon) in enumerate(zip(self.members, epsilons, strict=True)):
            explore[k], actions[k] = member.explore(envs, epsilon)
            member.acting_noise.resample()  # fresh noise every step (no-op without noisy layers)
        if explore.all():
            return actions
        obs_t = torch.from_numpy(obs).to(self.device, non_blocking=True)
        with torch.inference_mode(), self.autocast:
            output = self.online(obs_t)
        greedy = self.loss.q_values(output.float()).argmax(-1).cpu().numpy()
        return np.where(explore, actions, greedy)

    def update(self, batches: Sequence[Batch | None]) -> list[Metrics | None]:
        """One gradient step for every member with a batch (None: that member sits this round
        out); returns each member's detached metric tensors (None for those left out)."""
        taking = [k for k, b in enumerate(batches) if b is not None]
        filler = batches[taking[0]]  # a left-out member's rows, weighted 0
        batch = stack_batches([filler if b is None else b for b in batches])
        first = self.members[0]
        batch = (batch.pin_memory() if first.pin_memory else batch).to(
            self.device, non_blocking=True
        )
        for k in taking:
            self.members[k].learning_noise.resample()
        members, size = len(self.members), batch.action.shape[1]
        seeds, rows = self.grid(members, size)
        with self.autocast:
            output = self.online(batch.obs).float()
            with torch.no_grad():
                next_target = self.target(batch.next_obs).float()
                chooser = self.online(batch.next_obs).float() if self.config.double else next_target
        taken = output[seeds, rows, batch.action]  # [K, B] or [K, B, atoms]
        next_action = self.loss.q_values(chooser).argmax(-1)  # a* = argmax_a Q(s', a)
        next_taken = next_target[seeds, rows, next_action]
        flat = (t.flatten(0, 1) for t in (taken, next_taken, batch.reward, batch.discount))
        per_sample, sample_metrics = self.loss(*flat)
        per_sample = per_sample.view(members, size)
        # importance-sampling weights; 1 when uniform
        metrics = self.optimise((batch.weight * per_sample).mean(1), taking)
        priorities = self.loss.priority(per_sample.flatten()).view(members, size)
        q = self.loss.q_values(output.detach())
        td_loss = per_sample.detach().mean(1)
        metrics.update(
            td_loss=td_loss,
            q_values=q.flatten(1).mean(1),
            q_max=q.flatten(1).amax(1),
            **{k: v.detach().view(members, size).mean(1) for k, v in sample_metrics.items()},
        )
        results: list[Metrics | None] = [None] * members
        for k in taking:
            member = self.members[k]
            member.priorities = priorities[k]
            member.watch(td_loss[k])
            results[k] = {name: value[k] for name, value in metrics.items()}
        return results

    def optimise(self, losses: Tensor, taking: Sequence[int] | None = None) -> Metrics:
        """One optimiser step for the members in `taking` (default all) on their `losses` [K],
        built from the stacked forward, plus the L2 and regen penalties; gradients clipped per
        member when max_grad_norm is set. Returns [K] metrics: the gradient norm, and regen's
        distance when regen is on. The lab fits its targets through this too."""
        everyone = list(range(len(self.members)))
        taking = everyone if taking is None else list(taking)
        c, metrics = self.config, {}
        named = self.regularized(self.online.trainable()) if c.l2 > 0 or c.regen > 0 else {}
        if c.l2 > 0:
            losses = losses + c.l2 * l2_penalties(list(named.values()))
        if c.regen > 0:
            anchors = self.anchors(named)
            distance = regen_penalties(list(named.values()), [anchors[n] for n in named])
            losses = losses + c.regen * distance
            metrics["interventions/regen"] = distance.detach()
        if taking != everyone:  # the others' gradients are then exactly 0
            losses = losses * self.mask(taking)
        total = losses.sum()
        self.online.zero_grad()
        total.backward()
        grads = self.online.grads()
        metrics["grad_norm"] = clip_member_grads(list(grads.values()), c.max_grad_norm)
        self.step_optimisers(grads, taking)
        return metrics

    def mask(self, taking: list[int]) -> Tensor:
        """[K]: 1 for the members taking part in an update, 0 for the others."""
        mask = torch.zeros(len(self.members), device=self.device)
        mask[taking] = 1.0
        return mask

    def grid(self, members: int, size: int) -> tuple[Tensor, Tensor]:
        """Index tensors [K, 1] and [1, B] that pick each member's row of a [K, B, A] output
        (made once per shape)."""
        if (members, size) not in self.grids:
            seeds = torch.arange(members, device=self.device)[:, None]
            self.grids[members, size] = seeds, torch.arange(size, device=self.device)[None]
        return self.grids[members, size]

    def regularized(self, trainable: dict[str, Tensor]) -> dict[str, Tensor]:
        """The stacks of the parameters L2 and regen act on now (networks.roles, read from the
        first member once per structure: after inject, the restack reads them again, so that
        the new head is covered and the frozen one is not)."""
        if self.regularized_names is None:
            self.regularized_names = [name for name, _ in self.members[0].regularized()]
        return {name: trainable[name] for name in self.regularized_names}

    def anchors(self, named: dict[str, Tensor]) -> dict[str, Tensor]:
        """Regen's θ⁰ stacked over members by name (each member anchors a parameter when it first
        sees it: DQNAgent.anchor_new_parameters); stacked again when the names change."""
        if list(self.anchor_stack) != list(named):
            for m in self.members:
                m.anchor_new_parameters()
            self.anchor_stack = {
                name: torch.stack([m.anchors[name] for m in self.members]) for name in named
            }
        return self.anchor_stack

    @torch.no_grad()
    def step_optimisers(self, grads: dict[str, Tensor], taking: Sequence[int]) -> None:
        """Every member's Adam(W) step as one fused call per parameter group: each member keeps
        its own optimiser, state and step counts (interventions and checkpoints use them), and
        the call takes the members' parameters and moments (their own tensors) with their
        gradients as views of the stacked ones. Frozen parameters (an injected head's old parts)
        have no gradient and stay."""
        first = self.members[0].optimizer
        for settings, (names, (params, moments, squares, steps)) in zip(
            first.param_groups, self.adam_state(tuple(taking), grads), strict=True
        ):
            if not params:
                continue
            beta1, beta2 = settings["betas"]
            adam.adam(
                params,
                [grads[name][k] for k, name in names],
                moments,
                squares,
                [],
                steps,
                fused=settings["fused"],
                decoupled_weight_decay=settings["decoupled_weight_decay"],
                amsgrad=False,  # make_optimizer never sets it (it needs a third moment list)
                beta1=beta1,
                beta2=beta2,
                lr=settings["lr"],
                weight_decay=settings["weight_decay"],
                eps=settings["eps"],
                maximize=settings["maximize"],
            )
        for k in taking:
            self.members[k].updates += 1

    def adam_state(
        self, taking: tuple[int, ...], grads: dict[str, Tensor]
    ) -> list[tuple[list[tuple[int, str]], list[list[Tensor]]]]:
        """Per parameter group: the (member, name) of each trained parameter of the members in
        `taking`, and their parameters, first and second moments and step counts (kept until
        the next restack: optimiser state is written in place between them)."""
        if taking not in self.adam_lists:
            plan = []
            for g in range(len(self.members[0].optimizer.param_groups)):
                names, lists = [], ([], [], [], [])
                for k in taking:
                    member = self.members[k]
                    for name, p in member.group_parameters(g):
                        if name in grads:
                            state = member.adam_state(p)
                            names.append((k, name))
                            values = (p, state["exp_avg"], state["exp_avg_sq"], state["step"])
                            for out, value in zip(lists, values, strict=True):
                                out.append(value)
                plan.append((names, list(lists)))
            self.adam_lists[taking] = plan
        return self.adam_lists[taking]

    def sync_target(self, members: Sequence[int]) -> None:
        """Hard update θ̄ ← θ of the given members."""
        self.target.copy_from(self.online, members)
