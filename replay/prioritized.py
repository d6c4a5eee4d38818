"""Proportional prioritized replay (Schaul et al. 2016) on the uniform buffer's storage.

Only how slots are drawn changes: frames, stacks, n-step windows and episode boundaries are the
uniform buffer's, and a drawn slot that buffer would not sample (its n-step window not yet
written, its stack reaching into overwritten frames) is rejected by the same check and drawn
again, so the sampling distribution is P(i) = p_i^α / Σ_k p_k^α over the sampleable slots.

- priority p_i: what the learner returns for the sample (|δ| for scalar heads, the cross-entropy
  for categorical ones, as Dopamine's Rainbow does), plus 1e-10 so that no slot is starved;
- new transitions enter at the largest priority seen so far (1 at the start; Schaul et al. 2016,
  Algorithm 1 line 6; Dopamine's `max_recorded_priority`);
- importance-sampling weights w_i = (N·P(i))^-β / max_j w_j over the batch (Schaul et al. 2016,
  Algorithm 1 line 10; Dopamine normalises by the batch maximum too). β is fixed: Dopamine's
  Rainbow found a fixed 0.5 better than the 0.4 → 1 annealing on 4 of 5 games, and a fixed β
  keeps a resumed run whose --total-steps changed on the same schedule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from replay.buffer import _HAS, _MAX_DRAWS, ReplayBuffer, _concat
from replay.sum_tree import SumTree

PRIORITY_EPS = 1e-10
"""Added to every priority (Dopamine: sqrt(loss + 1e-10)), so no slot has probability 0."""


class PrioritizedReplayBuffer(ReplayBuffer):
    """`ReplayBuffer` whose `sample` draws slots in proportion to p^α and weights them.

    Args:
        alpha: priority exponent α (0 is uniform).
        beta: importance-sampling exponent β (0: no correction, 1: full correction).
        Every other argument is the uniform buffer's.
    """

    def __init__(self, *args: Any, alpha: float = 0.5, beta: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alpha, self.beta = float(alpha), float(beta)
        self.tree = SumTree(self.num_envs * self.stream_len)
        self.max_priority = 1.0

    # ------------------------------------------------------------------ priorities

    def _record(self, envs: np.ndarray, *args: np.ndarray) -> None:
        """A new transition enters at the largest priority seen so far."""
        super()._record(envs, *args)
        slot = envs * self.stream_len + (self._pos[envs] - 1) % self.stream_len
        self.tree.set(slot, np.full(len(slot), self.max_priority**self.alpha))

    def _write_frames(self, envs: np.ndarray, frames: np.ndarray) -> None:
        """An overwritten slot loses its transition and its priority."""
        slot = envs * self.stream_len + self._pos[envs] % self.stream_len
        retired = slot[self.tree.get(slot) > 0]
        if retired.size:
            self.tree.set(retired, np.zeros(retired.size))
        super()._write_frames(envs, frames)

    def update_priorities(self, index: np.ndarray | None, priorities: torch.Tensor) -> None:
        """Set p_i for the slots of the last batch. Moving the priorities to the host is the one
        device sync per update that prioritized replay cannot avoid. A slot overwritten since it
        was drawn (its priority is 0) stays empty."""
        p = priorities.detach().float().cpu().numpy().astype(np.float64) + PRIORITY_EPS
        live = self.tree.get(index) > 0
        self.tree.set(index[live], p[live] ** self.alpha)
        self.max_priority = max(self.max_priority, float(p.max()))

    def probabilities(self, index: np.ndarray) -> np.ndarray:
        """P(i) = p_i^α / Σ_k p_k^α (the sum over every stored transition; the few not yet
        sampleable make it a slight overestimate, which the max-normalised weights cancel)."""
        return self.tree.get(index) / self.tree.total()

    def _weights(self, index: np.ndarray) -> torch.Tensor:
        """w_i = (N·P(i))^-β / max_j w_j over the batch. N and Σ_k p_k^α cancel in the ratio:
        w_i = (p_i^α / min_j p_j^α)^-β, computed so (no count of sampleable slots needed)."""
        p = self.tree.get(index)
        return torch.from_numpy(((p / p.min()) ** -self.beta).astype(np.float32))

    # ------------------------------------------------------------------ drawing

    def _draw(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Draw slots in proportion to p^α; reject those the uniform buffer would not sample.

        Returns:
            base (env * stream_len), slot in the stream, and flat indices of the n-step window.
        """
        if batch_size <= 0 or self.tree.total() <= 0:
            raise ValueError(f"cannot sample {batch_size} from an empty replay buffer")
        draws: list[tuple[np.ndarray, ...]] = []
        got = 0
        for _ in range(_MAX_DRAWS):
            draws.append(self._keep_drawable(self.tree.sample(batch_size + 8, rng)))
            got += len(draws[-1][0])
            if got >= batch_size:
                kept = draws[0] if len(draws) == 1 else _concat(draws)
                return tuple(x[:batch_size] for x in kept)
        # Almost every stored slot is unsampleable (tiny episodes, a nearly empty buffer): list
        # the sampleable ones and draw among them in proportion to their priorities.
        base, slot, window = self._keep_drawable(np.flatnonzero(self.tree.leaves > 0))
        if base.size == 0:
            raise ValueError("no sampleable transition stored yet")
        p = self.tree.get(base + slot)
        pick = rng.choice(base.size, size=batch_size, p=p / p.sum())
        return base[pick], slot[pick], window[pick]

    def _keep_drawable(self, leaf: np.ndarray) -> tuple[np.ndarray, ...]:
        """The uniform buffer's checks on drawn leaves: inside [low, high) of its env's stream
        (stack intact, not the write head) and an n-step window fully written."""
        leaf = leaf[self.tree.get(leaf) > 0]  # rounding at the total may reach an empty leaf
        leaf = leaf[leaf < self.tree.size]
        env, slot = np.divmod(leaf, self.stream_len)
        head = self._pos[env]
        pos = head - self.stream_len + (slot - head) % self.stream_len  # newest lap holding slot
        low, high = self._ranges()
        ok = (pos >= low[env]) & (pos < high[env]) & (self._flags_flat[leaf] & _HAS > 0)
        return self._keep_sampleable(env[ok], pos[ok])

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The uniform buffer's state plus the leaf priorities and the running maximum."""
        state = super().state_dict()
        state["priorities"] = torch.from_numpy(self.tree.leaves.copy())
        state["max_priority"] = self.max_priority
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tree.leaves[...] = state["priorities"].numpy()
        self.tree.rebuild()
        self.max_priority = float(state["max_priority"])

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "alpha": self.alpha, "beta": self.beta}
