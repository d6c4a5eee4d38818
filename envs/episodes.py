"""Episode bookkeeping over a gymnasium 1.x vector env that autoresets on the next step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class Episode:
    env_index: int
    score: float
    """Raw game score over the whole game (all lives), whatever the agent learns from."""
    length: int
    """Agent steps in the game."""


def clip_rewards(rewards: np.ndarray) -> np.ndarray:
    """Nature DQN's reward clipping to [-1, 1], as float32."""
    return np.clip(rewards, -1.0, 1.0).astype(np.float32)


class EpisodeTracker:
    """Tells which rows of a vector step are transitions, and reports finished games.

    gymnasium 1.x vector envs (and ale-py's) reset a sub-env on the step *after* its episode ended:
    that step ignores the action and returns the first observation of the next episode, reward 0.
    Such a row is not a transition: it must not reach replay nor count as a learning step.
    With `life_loss_terminal`, a life loss is reported as terminated while the game goes on (no
    reset follows); the game is over only when no lives are left, or on truncation.
    """

    def __init__(self, num_envs: int, *, life_loss_terminal: bool = False) -> None:
        self.life_loss_terminal = life_loss_terminal
        self.scores = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.resetting = np.zeros(num_envs, dtype=bool)

    def step(
        self,
        raw_rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        lives: np.ndarray | None = None,
    ) -> tuple[np.ndarray, list[Episode]]:
        """Account for one vector step.

        Returns:
            valid: bool [num_envs], False for autoreset rows.
            finished: the games that ended on this step.
        """
        valid = ~self.resetting
        self.scores += np.where(valid, raw_rewards, 0.0)
        self.lengths += valid
        game_over = valid & (truncated | terminated)
        if self.life_loss_terminal and lives is not None:
            game_over &= truncated | (lives <= 0)
        finished = [
            Episode(int(i), float(self.scores[i]), int(self.lengths[i]))
            for i in np.flatnonzero(game_over)
        ]
        self.scores[game_over] = 0.0
        self.lengths[game_over] = 0
        self.resetting = game_over
        return valid, finished


def play_episodes(
    env: gym.vector.VectorEnv,
    obs: np.ndarray,
    policy: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    *,
    life_loss_terminal: bool = False,
) -> list[Episode]:
    """Play whole games until `episodes` are done, and return them in env order.

    Each env is given a quota of games fixed in advance and only its first games up to that quota
    count: taking the first N games to finish across envs would favour short games.
    """
    num_envs = env.num_envs
    quota = np.full(num_envs, episodes // num_envs) + (np.arange(num_envs) < episodes % num_envs)
    tracker = EpisodeTracker(num_envs, life_loss_terminal=life_loss_terminal)
    done: list[list[Episode]] = [[] for _ in range(num_envs)]
    while any(len(d) < q for d, q in zip(done, quota, strict=True)):
        obs, rewards, terminated, truncated, info = env.step(policy(obs))
        _, finished = tracker.step(rewards, terminated, truncated, info.get("lives"))
        for episode in finished:
            if len(done[episode.env_index]) < quota[episode.env_index]:
                done[episode.env_index].append(episode)
    return [episode for per_env in done for episode in per_env]
