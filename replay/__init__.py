"""Replay memory: frames stored once, frame stacks and n-step returns rebuilt at sample time;
uniform or proportional prioritized sampling over the same storage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from configs.schema import ReplayConfig
from replay.buffer import Batch, ReplayBuffer
from replay.prioritized import PrioritizedReplayBuffer
from replay.sum_tree import SumTree

__all__ = ["Batch", "PrioritizedReplayBuffer", "ReplayBuffer", "SumTree", "make_replay"]


def make_replay(
    config: ReplayConfig,
    num_envs: int,
    obs_shape: Sequence[int],
    obs_dtype: np.dtype | type,
    *,
    frame_stack: int,
    n_step: int,
    gamma: float,
    seed: int,
) -> ReplayBuffer:
    """The uniform buffer, or the prioritized one when `config.prioritized` (option `per`)."""
    kwargs = {"frame_stack": frame_stack, "n_step": n_step, "gamma": gamma, "seed": seed}
    if config.prioritized:
        kwargs |= {"alpha": config.priority_exponent, "beta": config.importance_exponent}
        return PrioritizedReplayBuffer(
            config.capacity, num_envs, tuple(obs_shape), obs_dtype, **kwargs
        )
    return ReplayBuffer(config.capacity, num_envs, tuple(obs_shape), obs_dtype, **kwargs)
