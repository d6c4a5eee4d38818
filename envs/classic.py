"""Classic-control tasks (CartPole-v1, Acrobot-v1, ...) through gymnasium's sync vector env."""

from __future__ import annotations

import gymnasium as gym

CLASSIC_IDS = sorted(
    env_id
    for env_id, spec in gym.registry.items()
    if isinstance(spec.entry_point, str) and "classic_control" in spec.entry_point
)


def make_classic(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """A SyncVectorEnv with gymnasium 1.x's next-step autoreset (the same contract as ale-py's)."""
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
