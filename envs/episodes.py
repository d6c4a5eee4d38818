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
    reset follows); the game is expected to end when no lives are left, or on truncation.

    ale-py decides on its own when a game is over, and not always as the flags announce it: a life
    lost on the step that hits the frame cap reads terminated, not truncated, with lives left, and
    some games end with lives left. So where the env reports its `episode_frame_number`, a reset
    row is the one whose counter did not advance (a step always adds frame_skip frames; a reset
    starts again near 0), and a game that ended unannounced is closed on that row.
    """

    def __init__(self, num_envs: int, *, life_loss_terminal: bool = False) -> None:
        self.life_loss_terminal = life_loss_terminal
        self.scores = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.resetting = np.zeros(num_envs, dtype=bool)
        self.last_frame = np.full(num_envs, -1, dtype=np.int64)

    def step(
        self,
        raw_rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        lives: np.ndarray | None = None,
        frame_numbers: np.ndarray | None = None,
    ) -> tuple[np.ndarray, list[Episode]]:
        """Account for one vector step.

        Args:
            lives: lives left (ale-py's info["lives"]), used with life_loss_terminal.
            frame_numbers: ale-py's info["episode_frame_number"]: when given, it alone tells reset
                rows apart, so that no game over of the emulator's is missed.

        Returns:
            valid: bool [num_envs], False for autoreset rows.
            finished: the games that ended on this step (announced, or found unannounced).
        """
        if frame_numbers is None:
            valid = ~self.resetting
        else:
            valid = frame_numbers > self.last_frame
            self.last_frame = np.asarray(frame_numbers, dtype=np.int64)
        finished = self.finish(~valid & ~self.resetting)  # a reset no flag announced
        self.scores += np.where(valid, raw_rewards, 0.0)
        self.lengths += valid
        game_over = valid & (truncated | terminated)
        if self.life_loss_terminal and lives is not None:
            game_over &= truncated | (lives <= 0)
        self.resetting = game_over
        return valid, finished + self.finish(game_over)

    def finish(self, over: np.ndarray) -> list[Episode]:
        """Close the games of the envs in `over` and start counting their next ones at zero."""
        finished = [
            Episode(int(i), float(self.scores[i]), int(self.lengths[i]))
            for i in np.flatnonzero(over)
        ]
        self.scores[over] = 0.0
        self.lengths[over] = 0
        return finished


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
        _, finished = tracker.step(
            rewards, terminated, truncated, info.get("lives"), info.get("episode_frame_number")
        )
        for episode in finished:
            if len(done[episode.env_index]) < quota[episode.env_index]:
                done[episode.env_index].append(episode)
    return [episode for per_env in done for episode in per_env]
