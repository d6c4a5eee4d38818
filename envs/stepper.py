"""Split a vector step in two, so the learner can work while the emulators run."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class AsyncStepper:
    """`start(actions)` then `wait()`. ale-py's vector env steps its emulators in C++ threads
    between `send` and `recv`; other vector envs step synchronously inside `wait`."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        self.env = env
        self.native = hasattr(env, "send") and hasattr(env, "recv")
        self.pending: np.ndarray | None = None

    def start(self, actions: np.ndarray) -> None:
        if self.native:
            self.env.send(actions)
        else:
            self.pending = actions

    def wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """(obs, rewards, terminated, truncated, info), rows in env order."""
        if not self.native:
            return self.env.step(self.pending)
        # With batch_size == num_envs (how make_atari builds it) recv answers in env order.
        return self.env.recv()
