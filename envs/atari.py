"""Atari games through ale-py's native vector env: C++ threads step the emulators and do the
standard preprocessing (frame skip with max-pooling, 84x84 grayscale, frame stack, no-op starts)."""

from __future__ import annotations

import difflib
import re

import gymnasium as gym
from ale_py import roms
from ale_py.vector_env import AtariVectorEnv

from configs.schema import EnvConfig

SCREEN = (210, 160)
"""The Atari 2600's native screen, height x width."""
ALE_ID = re.compile(r"^(?:ALE/)?(?P<game>[A-Za-z0-9_]+?)(?:NoFrameskip)?(?:-v\d+)?$")


def camel_to_snake(name: str) -> str:
    """`MontezumaRevenge` -> `montezuma_revenge`, `pong` stays `pong`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def snake_to_camel(rom: str) -> str:
    return "".join(part.capitalize() for part in rom.split("_"))


def atari_rom(env_id: str) -> str | None:
    """The ROM id for `Pong`, `pong`, `ALE/Pong-v5`, `PongNoFrameskip-v4`; None if not a game."""
    match = ALE_ID.match(env_id.strip())
    if match is None:
        return None
    rom = camel_to_snake(match.group("game"))
    return rom if rom in roms.get_all_rom_ids() else None


def suggest(env_id: str, classic_ids: list[str]) -> str:
    """An error message naming the bad id and the closest valid ones."""
    games = [snake_to_camel(r) for r in roms.get_all_rom_ids()]
    candidates = games + classic_ids
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(env_id.lower(), list(lowered), n=3, cutoff=0.6)
    hint = f" Closest valid ids: {', '.join(lowered[c] for c in close)}." if close else ""
    return (
        f"Unknown environment '{env_id}'.{hint} Atari games are named like Pong, pong or "
        f"ALE/Pong-v5 ({len(games)} games ship with ale-py); classic-control ids like CartPole-v1."
    )


def make_atari(
    rom: str, num_envs: int, config: EnvConfig, *, rgb_screen: bool = False
) -> gym.vector.VectorEnv:
    """An AtariVectorEnv under the Machado et al. (2018) protocol. Rewards come back raw: clipping
    is applied by the training loop so that logged returns stay the game's score. With
    `rgb_screen` the observation is the native colour screen of each step's last frame instead of
    the agent's input (for videos): the same protocol, so the same seed plays the same game."""
    frames = (
        {"img_height": SCREEN[0], "img_width": SCREEN[1], "grayscale": False, "maxpool": False,
         "stack_num": 1}
        if rgb_screen
        else {"img_height": 84, "img_width": 84, "grayscale": True, "maxpool": True,
              "stack_num": config.frame_stack}
    )  # fmt: skip
    return AtariVectorEnv(
        rom,
        num_envs,
        repeat_action_probability=config.sticky_actions,
        frameskip=config.frame_skip,
        noop_max=config.noop_max,
        full_action_space=config.full_action_space,
        max_num_frames_per_episode=config.max_episode_frames,
        # A life loss is reported as terminated while the game goes on; see EpisodeTracker.
        life_loss_info=config.terminal_on_life_loss,
        episodic_life=False,
        use_fire_reset=config.fire_reset,
        reward_clipping=False,
        autoreset_mode="NextStep",
        **frames,
    )
