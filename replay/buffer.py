"""Uniform replay storing each frame once; frame stacks and n-step targets are rebuilt on sample.

Layout (Dopamine-like): every vector env owns a circular stream of `capacity // num_envs` slots.
A slot holds one frame and, when a transition leaves that frame, its action, reward and flags.
An episode begins by writing all frames of its first stacked observation (at an Atari reset three
zero frames and the first frame), so the stack at any slot ``t`` -- frames ``t-S+1 .. t`` -- never
reaches into the previous episode. Each later step writes only the newest frame of ``next_obs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

# Bits of the per-slot flags byte.
_HAS = np.uint8(1)  # a transition leaves this slot (start padding and final frames have none)
_TERM = np.uint8(2)  # that transition terminated the episode: no bootstrap
_TRUNC = np.uint8(4)  # that transition truncated the episode: bootstrap from the final frame
_MAX_DRAWS = 64  # rejection rounds before falling back to listing every sampleable slot


@dataclass(frozen=True)
class Batch:
    """A batch of n-step transitions; `reward` and `discount` already fold in the n steps."""

    obs: torch.Tensor  # [B, *obs_shape], stored dtype
    action: torch.Tensor  # [B] int64
    reward: torch.Tensor  # [B] float32, sum_{k<m} gamma^k r_{t+k}
    discount: torch.Tensor  # [B] float32, gamma^m, or 0 if the episode terminated within m steps
    next_obs: torch.Tensor  # [B, *obs_shape], the observation m steps later
    weight: torch.Tensor | None = None  # [B] float32 loss weights (IS weights); None: all ones
    index: np.ndarray | None = None  # [B] replay slots drawn, stays on the host

    def __post_init__(self) -> None:
        if self.weight is None:  # uniform replay: every sample weighs 1 (x * 1.0 is exact)
            ones = torch.ones(len(self.action), device=self.action.device)
            object.__setattr__(self, "weight", ones)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Return a copy with every tensor moved to `device` (`index` stays on the host)."""
        return Batch(
            *(t.to(device, non_blocking=non_blocking) for t in self._fields()), index=self.index
        )

    def pin_memory(self) -> Batch:
        """A copy in page-locked host memory, so `to(cuda, non_blocking=True)` overlaps compute."""
        return Batch(*(t.pin_memory() for t in self._fields()), index=self.index)

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return (self.obs, self.action, self.reward, self.discount, self.next_obs, self.weight)


class ReplayBuffer:
    """Uniform replay for one or several vector envs writing interleaved.

    Args:
        capacity: total slots over all envs (one slot per stored frame).
        num_envs: number of vector envs; each gets `capacity // num_envs` slots.
        obs_shape: shape of one observation; with `frame_stack > 1` it is (frame_stack, *frame).
        obs_dtype: dtype of stored observations (uint8 for Atari).
        frame_stack: frames per observation; 1 means a frame is the whole observation.
        n_step: longest return horizon n.
        gamma: discount factor.
        seed: seed of the buffer's own random generator.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | type,
        *,
        frame_stack: int = 1,
        n_step: int = 1,
        gamma: float = 0.99,
        seed: int = 0,
    ) -> None:
        obs_shape = tuple(int(s) for s in obs_shape)
        if not 1 <= n_step < 256:
            raise ValueError(f"n_step={n_step} must be in [1, 255]")
        if frame_stack > 1 and obs_shape[0] != frame_stack:
            raise ValueError(f"obs_shape[0]={obs_shape[0]} must equal frame_stack={frame_stack}")
        self.capacity, self.num_envs = int(capacity), int(num_envs)
        self.obs_shape, self.obs_dtype = obs_shape, np.dtype(obs_dtype)
        self.frame_stack, self.n_step, self.gamma = int(frame_stack), int(n_step), float(gamma)
        self.stream_len = self.capacity // self.num_envs
        # A stream must hold a start stack plus a full n-step window, or nothing is ever sampleable.
        if self.stream_len < self.frame_stack + self.n_step + 1:
            raise ValueError(f"capacity // num_envs = {self.stream_len} is too small")
        frame_shape = obs_shape[1:] if frame_stack > 1 else obs_shape
        shape = (self.num_envs, self.stream_len)
        self._frames = np.zeros(shape + frame_shape, dtype=self.obs_dtype)
        self._action = np.zeros(shape, dtype=np.int32)
        self._reward = np.zeros(shape, dtype=np.float32)
        self._flags = np.zeros(shape, dtype=np.uint8)
        self._pos = np.zeros(self.num_envs, dtype=np.int64)  # frames written so far, per env
        self._at_start = np.ones(self.num_envs, dtype=bool)
        self._live = np.zeros(self.num_envs, dtype=np.int64)  # transitions not yet overwritten
        self._episode = np.zeros(self.num_envs, dtype=np.int64)  # transitions in running episode
        self._powers = self.gamma ** np.arange(self.n_step + 1, dtype=np.float64)
        self._steps = np.arange(self.n_step)
        self._before = np.triu(np.ones((self.n_step, self.n_step), np.uint8), 1)
        self._stack_offsets = np.arange(1 - self.frame_stack, 1)
        # Flat views (env * stream_len + slot) so sampling gathers with one index array.
        self._frames_flat = self._frames.reshape(-1, *frame_shape)
        self._action_flat = self._action.reshape(-1)
        self._reward_flat = self._reward.reshape(-1)
        self._flags_flat = self._flags.reshape(-1)
        self._rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ writing

    def add(
        self,
        obs: ArrayLike,
        action: ArrayLike,
        reward: ArrayLike,
        next_obs: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        *,
        valid: ArrayLike | None = None,
    ) -> None:
        """Store one vector-env step; every argument has leading dimension `num_envs`.

        Args:
            obs: observations at which `action` was taken.
            action, reward: what was done and the (possibly clipped) reward.
            next_obs: what env.step returned (the real final observation when an episode ends).
            terminated, truncated: episode-end flags from env.step.
            valid: False for rows that are not transitions (the autoreset step of gymnasium 1.x
                vector envs); those rows are skipped. Default: all True.
        """
        ok = np.ones(self.num_envs, bool) if valid is None else np.asarray(valid, bool)
        envs = np.flatnonzero(ok)
        if envs.size == 0:
            return
        starting = envs[self._at_start[envs]]
        if starting.size:
            self._begin_episodes(starting, np.asarray(obs)[starting])
        term = np.asarray(terminated, bool)[envs]
        trunc = np.asarray(truncated, bool)[envs]
        self._record(envs, np.asarray(action)[envs], np.asarray(reward)[envs], term, trunc)
        self._write_frames(envs, self._newest(np.asarray(next_obs)[envs]))
        ended = term | trunc
        self._at_start[envs] = ended
        self._episode[envs] = np.where(ended, 0, self._episode[envs])

    def _begin_episodes(self, envs: np.ndarray, obs: np.ndarray) -> None:
        """Write every frame of the first observation, stored as-is so its stack is exact."""
        self._episode[envs] = 0
        if self.frame_stack == 1:
            self._write_frames(envs, obs)
            return
        for k in range(self.frame_stack):
            self._write_frames(envs, obs[:, k])

    def _write_frames(self, envs: np.ndarray, frames: np.ndarray) -> None:
        """Append one frame per env in `envs` (distinct ids) at its write head."""
        # One flat index per env: numpy copies whole frames for a single index array, but walks
        # element by element for an (env, slot) pair of them (~10x slower for Atari frames).
        index = envs * self.stream_len + self._pos[envs] % self.stream_len
        # Overwriting a slot that held a transition retires that transition.
        self._live[envs] -= (self._flags_flat[index] & _HAS).astype(np.int64)
        self._frames_flat[index] = frames
        self._flags_flat[index] = 0
        self._pos[envs] += 1

    def _record(
        self,
        envs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        term: np.ndarray,
        trunc: np.ndarray,
    ) -> None:
        """Attach a transition to the newest frame of each env (the frame of `obs`)."""
        index = envs * self.stream_len + (self._pos[envs] - 1) % self.stream_len
        self._action_flat[index] = action
        self._reward_flat[index] = reward
        self._flags_flat[index] = _HAS | (term * _TERM) | (trunc * _TRUNC)
        self._live[envs] += 1
        self._episode[envs] += 1

    def _newest(self, obs: np.ndarray) -> np.ndarray:
        return obs[:, -1] if self.frame_stack > 1 else obs

    # ------------------------------------------------------------------ sampling

    def __len__(self) -> int:
        """Sampleable transitions: exact until a stream wraps, then a lower bound (off by < S)."""
        pending = np.minimum(self._episode, self.n_step - 1)  # their n-step window is not written
        tail = np.clip(self._pos - self.stream_len + self.frame_stack - 1, 0, self.frame_stack - 1)
        return int(np.maximum(self._live - pending - tail, 0).sum())

    def can_sample(self, batch_size: int) -> bool:
        """Whether `sample(batch_size)` can draw from at least `batch_size` distinct transitions."""
        return len(self) >= batch_size

    def sample(
        self,
        batch_size: int,
        *,
        rng: np.random.Generator | None = None,
        uniform: bool = False,
    ) -> Batch:
        """Draw `batch_size` transitions (with replacement) among sampleable ones: uniformly here,
        as a subclass's `_draw` says otherwise (prioritized replay).

        Args:
            batch_size: transitions to draw.
            rng: the generator to draw with; default the buffer's own. An observer (the probe
                batch) passes its own, so that observing never changes the training batches.
            uniform: draw uniformly whatever the buffer's own rule, so that an observer (the
                probe batch) sees the same kind of states under every variant.

        Returns:
            A Batch of CPU tensors; rebuilds stacks and n-step returns from the stored frames.
        """
        draw = self._draw_uniform if uniform else self._draw
        base, slot, window = draw(batch_size, rng or self._rng)
        ret, discount, m = self._n_step(window)
        # One gather for obs (stack ending at t) and next_obs (stack ending at t + m).
        stacks = self._stacks(np.concatenate([base, base]), np.concatenate([slot, slot + m]))
        index = base + slot
        return Batch(
            obs=torch.from_numpy(stacks[:batch_size]),
            action=torch.from_numpy(self._action_flat[index].astype(np.int64)),
            reward=torch.from_numpy(ret),
            discount=torch.from_numpy(discount),
            next_obs=torch.from_numpy(stacks[batch_size:]),
            weight=self._weights(index),
            index=index,
        )

    def _weights(self, index: np.ndarray) -> torch.Tensor:
        """Loss weights of the drawn slots: 1 each under uniform sampling."""
        return torch.ones(len(index))

    def update_priorities(self, index: np.ndarray | None, priorities: torch.Tensor) -> None:
        """Uniform replay keeps no priorities: a no-op (and no host sync)."""

    def _n_step(self, window: np.ndarray) -> tuple[np.ndarray, ...]:
        """n-step return, discount and horizon m of windows given as flat slot indices [B, n].

        The window stops at the first episode end (m <= n). reward = sum_{k<m} gamma^k r_{t+k};
        discount = 0 if that end is a termination, else gamma^m (a truncation bootstraps from
        the final observation; Sutton & Barto 2018, eq. 7.1, cut at the episode end).
        """
        flags = self._flags_flat[window]
        needed = _needed_steps(flags, self._before)
        m = needed.sum(1)
        ret = (self._reward_flat[window] * needed * self._powers[: self.n_step]).sum(1)
        terminated = ((flags & _TERM).astype(bool) & needed).any(1)
        discount = np.where(terminated, 0.0, self._powers[m])
        return ret.astype(np.float32), discount.astype(np.float32), m

    def _draw(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Rejection-sample slots uniformly among sampleable ones.

        Returns:
            base (env * stream_len), slot in the stream, and flat indices of the n-step window.
        """
        low, high = self._ranges()
        sizes = np.maximum(high - low, 0)
        cum = np.cumsum(sizes)
        if batch_size <= 0 or cum[-1] == 0:
            raise ValueError(f"cannot sample {batch_size} from an empty replay buffer")
        shift = low - (cum - sizes)  # absolute slot = u + shift[env] for u in env's share
        draws: list[tuple[np.ndarray, ...]] = []
        got = 0
        for _ in range(_MAX_DRAWS):
            u = rng.integers(0, cum[-1], size=batch_size + batch_size // 2 + 8)
            env = np.searchsorted(cum, u, side="right")
            draws.append(self._keep_sampleable(env, u + shift[env]))
            got += len(draws[-1][0])
            if got >= batch_size:
                kept = draws[0] if len(draws) == 1 else _concat(draws)
                return tuple(x[:batch_size] for x in kept)
        # Almost every slot is unsampleable (tiny episodes or a nearly empty buffer): enumerate.
        env = np.repeat(np.arange(self.num_envs), sizes)
        base, slot, window = self._keep_sampleable(env, np.arange(env.size) + shift[env])
        if base.size == 0:
            raise ValueError("no sampleable transition stored yet")
        pick = rng.integers(0, base.size, size=batch_size)
        return base[pick], slot[pick], window[pick]

    _draw_uniform = _draw
    """The uniform draw, which subclasses that override `_draw` keep."""

    def _stacks(self, base: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Stacked observations whose newest frame is at slot `end` of stream `base`."""
        idx = base[:, None] + (end[:, None] + self._stack_offsets) % self.stream_len
        return self._frames_flat[idx].reshape((len(end), *self.obs_shape))

    def _ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Per env, absolute slots [low, high) whose stack is intact and that may hold a transition.

        Returns:
            low: first slot whose frames t-S+1..t are all still in the ring.
            high: the write head's newest frame, which never has a transition yet.
        """
        low = np.maximum(self._pos - self.stream_len + self.frame_stack - 1, 0)
        return low, self._pos - 1

    def _keep_sampleable(self, env: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, ...]:
        """Keep the slots whose n-step window (cut at an episode end) is fully written.

        Slots past the write head hold a stale lap, but no window reads them: the head's newest
        frame has no transition yet (flags cleared on write), so a window reaching it is rejected.

        Returns:
            base, slot and window (as in `_draw`) of the kept slots.
        """
        base, slot = env * self.stream_len, pos % self.stream_len
        window = base[:, None] + (slot[:, None] + self._steps) % self.stream_len
        flags = self._flags_flat[window]
        ok = ((flags & _HAS).astype(bool) | ~_needed_steps(flags, self._before)).all(1)
        return base[ok], slot[ok], window[ok]

    # ------------------------------------------------------------------ bookkeeping

    def nbytes(self) -> int:
        """Bytes of the backing arrays as allocated (pages are committed only when written)."""
        arrays = (self._frames, self._action, self._reward, self._flags)
        return int(sum(a.nbytes for a in arrays))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the buffer, as tensors and plain Python values.

        Returns:
            A dict loadable with `torch.load(..., weights_only=True)`; tensors share memory.
        """
        return {
            "config": self._config(),
            "frames": torch.from_numpy(self._frames),
            "action": torch.from_numpy(self._action),
            "reward": torch.from_numpy(self._reward),
            "flags": torch.from_numpy(self._flags),
            "pos": torch.from_numpy(self._pos),
            "at_start": torch.from_numpy(self._at_start),
            "live": torch.from_numpy(self._live),
            "episode": torch.from_numpy(self._episode),
            "rng": self._rng.bit_generator.state,  # plain dict of str and int
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`; the buffer must have been built with the same config.

        The envs that filled the buffer are gone, and the next `add` starts fresh episodes, so
        every episode still running is closed as truncated (see `truncate_running`)."""
        if state["config"] != self._config():
            raise ValueError(f"replay config {state['config']} != {self._config()}")
        for name in ("frames", "action", "reward", "flags", "pos", "at_start", "live", "episode"):
            getattr(self, f"_{name}")[...] = state[name].numpy()
        self._rng.bit_generator.state = dict(state["rng"])
        self.truncate_running()

    def truncate_running(self) -> None:
        """End every running episode as truncated at its newest transition, so the next `add`
        begins a new episode instead of joining the old one. The newest frame (the last
        next_obs) is stored, so bootstrapping from it stays exact."""
        running = np.flatnonzero(~self._at_start)
        slot = (self._pos[running] - 2) % self.stream_len  # the newest transition's frame
        self._flags[running, slot] |= _TRUNC
        self._at_start[running] = True
        self._episode[running] = 0

    def _config(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "num_envs": self.num_envs,
            "obs_shape": list(self.obs_shape),
            "obs_dtype": self.obs_dtype.str,
            "frame_stack": self.frame_stack,
            "n_step": self.n_step,
            "gamma": self.gamma,
        }


def _concat(draws: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    return [np.concatenate(x) for x in zip(*draws, strict=True)]


def _needed_steps(flags: np.ndarray, before: np.ndarray) -> np.ndarray:
    """[B, n] mask of the steps inside each window: up to and including the first episode end.

    Args:
        flags: per-step flags of each window.
        before: [n, n] uint8, before[j, k] = 1 if j < k.
    """
    ended = ((flags & (_TERM | _TRUNC)) > 0).view(np.uint8)
    # ends before step k = sum_{j<k} ended[:, j], as one small matmul (faster than cumsum here);
    # it is at most n - 1 <= 254, so uint8 cannot overflow.
    return ended @ before == 0
