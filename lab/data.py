"""The lab's inputs: real Atari frames, made at run time by random play in the ALE (no download).

Frames come from the agents' own Atari pipeline (`envs.make_atari`: 84x84 grayscale, max-pooled,
sticky actions), taken from several games so that the inputs differ, average-pooled to a small
side (the lab's networks are small so that a sequence of tasks trains in CPU seconds) and
standardised per pixel over the set.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from configs.schema import EnvConfig
from envs import derived_seed, make_atari

GAMES = ("alien", "asterix", "battle_zone", "beam_rider", "boxing", "breakout", "enduro",
         "freeway", "frostbite", "hero", "ms_pacman", "pong", "qbert", "riverraid", "seaquest",
         "space_invaders")  # fmt: skip
"""Games the frames come from, in turn: different screens, so random labels can be memorised."""

STRIDE = 16
"""Random-play steps between two kept frames of a game (consecutive frames are near duplicates)."""


def atari_frames(
    count: int, *, side: int, seed: int, env: EnvConfig, games: tuple[str, ...] = GAMES
) -> Tensor:
    """`count` distinct frames, [count, 1, side, side] float32, standardised per pixel.

    Each game plays uniformly random actions from its own seed and keeps one frame (the newest of
    the agent's frame stack) every `STRIDE` steps; frames are pooled from 84x84 to side x side.
    """
    per_game = -(-count // len(games)) * 5 // 4  # a margin for the duplicates dropped
    config = dataclasses.replace(env, frame_stack=1)
    frames = [
        random_play(game, per_game, config, derived_seed(seed, i)) for i, game in enumerate(games)
    ]
    unique = np.unique(np.concatenate(frames), axis=0)
    order = np.random.default_rng(seed).permutation(len(unique))[:count]
    pixels = torch.from_numpy(unique[order]).float()
    pooled = F.adaptive_avg_pool2d(pixels, side)
    return standardise(pooled)


def random_play(game: str, count: int, config: EnvConfig, seed: int) -> np.ndarray:
    """[count, 1, 84, 84] uint8 frames of `game` under uniformly random actions."""
    env = make_atari(game, 1, config)
    try:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        kept = []
        for step in range(count * STRIDE):
            obs, *_ = env.step(env.action_space.sample())
            if step % STRIDE == STRIDE - 1:
                kept.append(obs[0])
    finally:
        env.close()
    return np.stack(kept)


def standardise(x: Tensor) -> Tensor:
    """(x − mean) / std per pixel over the set (constant pixels stay 0)."""
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True)
    return (x - mean) / std.clamp_min(1e-6)
