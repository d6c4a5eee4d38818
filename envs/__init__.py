"""Environments: `make_env` builds an Atari (ale-py), MinAtar or classic-control vector env."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from configs.errors import UserError
from configs.schema import EnvConfig
from envs.atari import atari_rom, make_atari, suggest
from envs.classic import CLASSIC_IDS, make_classic
from envs.episodes import Episode, EpisodeTracker, clip_rewards, play_episodes
from envs.minatar import MinAtarVectorEnv, check_schedule, is_minatar, minatar_games, run_name
from envs.scores import human_normalized
from envs.stepper import AsyncStepper

__all__ = [
    "AsyncStepper",
    "EnvSpec",
    "Episode",
    "EpisodeTracker",
    "clip_rewards",
    "derived_seed",
    "human_normalized",
    "make_env",
    "play_episodes",
    "resolve_env_id",
]


@dataclass(frozen=True)
class EnvSpec:
    """What the rest of the suite needs to know about an environment."""

    name: str
    """ale-py ROM id (`pong`) for Atari, `minatar_breakout` for MinAtar, the gymnasium id
    otherwise."""
    is_atari: bool
    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype
    num_actions: int
    frame_stack: int
    """Frames stacked along the first observation axis (1 for vector observations)."""


def derived_seed(*entropy: int) -> int:
    """A seed in [0, 2**30) mixed from `entropy` (e.g. run seed and step) by numpy's SeedSequence:
    nearby inputs give unrelated seeds. ale-py takes int32 seeds, one per env from this one up."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0]) % 2**30


def resolve_env_id(env_id: str) -> tuple[str, bool]:
    """(`pong`, True) for any spelling of an Atari game, (`minatar_breakout`, False) for MinAtar
    (`minatar_space_invaders-asterix` for a sequence), (`CartPole-v1`, False) for classic control;
    a UserError naming the closest valid ids otherwise."""
    if is_minatar(env_id):
        return run_name(minatar_games(env_id)), False
    rom = atari_rom(env_id)
    if rom is not None:
        return rom, True
    if env_id in CLASSIC_IDS:
        return env_id, False
    raise UserError(suggest(env_id, CLASSIC_IDS))


def make_env(
    env_id: str,
    num_envs: int,
    seed: int,
    config: EnvConfig,
    *,
    step: int = 0,
    switching: bool = True,
) -> tuple[gym.vector.VectorEnv, EnvSpec, np.ndarray]:
    """Build a seeded vector env.

    Args:
        step: agent steps already taken: continual MinAtar starts on the game due then.
        switching: False keeps continual MinAtar on that game for good (evaluation phases).

    Returns:
        env: the vector env (next-step autoreset, raw rewards).
        spec: its shapes and action count.
        obs: the first observations, [num_envs, *obs_shape].
    """
    name, is_atari = resolve_env_id(env_id)
    if is_minatar(env_id):
        games = minatar_games(env_id)
        check_schedule(games, config.switch_every)
        env = MinAtarVectorEnv(games, num_envs, config, step=step, switching=switching)
    elif is_atari:
        env = make_atari(name, num_envs, config)
    else:
        env = make_classic(name, num_envs)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    if not isinstance(env.single_action_space, gym.spaces.Discrete):
        env.close()
        raise UserError(f"Environment '{env_id}' has continuous actions; DQN needs a discrete set.")
    spec = EnvSpec(
        name=name,
        is_atari=is_atari,
        obs_shape=tuple(env.single_observation_space.shape),
        obs_dtype=np.dtype(env.single_observation_space.dtype),
        num_actions=int(env.single_action_space.n),
        frame_stack=config.frame_stack if is_atari else 1,
    )
    return env, spec, obs
