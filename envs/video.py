"""Video of play: the game's own RGB screen, not the agent's 84x84 grayscale input.

ale-py's vector env hands the agent preprocessed frames only, so the screen comes from a *twin*:
a second env built with the same protocol and seed, stepped with the same actions. The emulators
are deterministic, so the twin plays the very same game; every step checks that the two agree on
rewards and episode ends, and a twin that drifts is an error, never a video of another game. The
agent's env is `make_env`'s own, so the agent acts exactly as under evaluate.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym
import numpy as np
from ale_py.vector_env import AtariVectorEnv

from configs.schema import EnvConfig
from envs.atari import make_atari

ATARI_FPS = 60


class Writer(Protocol):
    def append_data(self, frame: np.ndarray) -> None: ...


class ClipFull(Exception):
    """Raised by `Recorder` once the clip holds its most frames: ends play early."""


@dataclass(frozen=True)
class Screen:
    """The twin env and how to read its RGB frame."""

    env: gym.vector.VectorEnv
    fps: float

    def frame(self, obs: np.ndarray) -> np.ndarray:
        """The RGB frame [H, W, 3] uint8 of the twin's only env."""
        if isinstance(self.env, AtariVectorEnv):
            return obs[0, -1]  # [1, stack 1, H, W, 3]
        return self.env.render()[0]


def atari_screen(rom: str, config: EnvConfig) -> Screen:
    """An RGB twin of the agent's env: `make_atari`'s protocol, the native screen in colour, the
    last frame of each skip (no max-pooling, which only changes what is seen, not the game)."""
    return Screen(make_atari(rom, 1, config, rgb_screen=True), ATARI_FPS / config.frame_skip)


def classic_screen(env_id: str) -> Screen:
    """A classic-control twin that renders to an array (pygame, without a display)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rgb_array needs no window
    env = gym.make_vec(env_id, num_envs=1, vectorization_mode="sync", render_mode="rgb_array")
    return Screen(env, float(env.metadata.get("render_fps", 30)))


class Recorder(gym.vector.VectorWrapper):
    """Steps the agent's env and the screen twin together, appending the twin's frame to
    `writer` after every step; raises ClipFull after `max_frames` frames."""

    def __init__(
        self, env: gym.vector.VectorEnv, screen: Screen, writer: Writer, *, max_frames: int
    ) -> None:
        super().__init__(env)
        self.screen, self.writer, self.max_frames = screen, writer, max_frames
        self.frames = 0

    def start(self, seed: int) -> None:
        """Reset the twin with the agent env's seed and record its first frame."""
        obs, _ = self.screen.env.reset(seed=seed)
        self.record(obs)

    def step(self, actions: np.ndarray):
        result = self.env.step(actions)
        twin = self.screen.env.step(actions)
        for name, mine, theirs in zip(
            ("reward", "terminated", "truncated"), result[1:4], twin[1:4], strict=True
        ):
            if not np.array_equal(mine, theirs):
                raise RuntimeError(f"the screen twin drifted from the agent's env ({name})")
        self.record(twin[0])
        return result

    def record(self, obs: np.ndarray) -> None:
        self.writer.append_data(self.screen.frame(obs))
        self.frames += 1
        if self.frames >= self.max_frames:
            raise ClipFull
