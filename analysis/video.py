"""A checkpoint's play recorded as an MP4 of the game's RGB screen (imageio with imageio-ffmpeg's
own ffmpeg): `evaluate.py --video` and `report.py --videos`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

import configs
from agents import (
    DQNAgent,
    agent_from_checkpoint,
    find_checkpoint,
    load_checkpoint,
    resolve_device,
)
from analysis.extras import INSTALL, VIDEO_MODULES, require
from configs.errors import UserError
from envs import make_env, play_episodes
from envs.minatar import is_minatar
from envs.video import ClipFull, Recorder, Screen, atari_screen, classic_screen

EVAL_SEED = 10_000
"""evaluate.py's default environment seed."""


@dataclass(frozen=True)
class Clip:
    """A recorded video."""

    path: Path
    checkpoint: Path
    frames: int
    fps: float
    score: float | None
    """Raw score of the game, or None when the clip ended before the game did."""


def record_run(
    path: Path,
    out: Path,
    *,
    seed: int = EVAL_SEED,
    device: str = "auto",
    max_frames: int | None = None,
) -> Clip:
    """Play one game with the checkpoint's online network at eval ε (the checkpoint file, or the
    newest of a run directory) and write the screen to `out` (.mp4), at most `max_frames` frames."""
    require(VIDEO_MODULES, purpose="--video")
    checkpoint_file = find_checkpoint(path)
    checkpoint = load_checkpoint(checkpoint_file)
    config = configs.from_dict(checkpoint["config"])
    if is_minatar(config.env.id):
        raise UserError(
            f"--video records the screen of Atari and classic-control games; {config.env.id} is "
            "MinAtar, whose 10x10 maps have no screen to record here. Leave out --video."
        )
    env, spec, obs = make_env(config.env.id, 1, seed, config.env)
    screen = atari_screen(spec.name, config.env) if spec.is_atari else classic_screen(spec.name)
    try:
        agent = agent_from_checkpoint(checkpoint, config, spec, device=resolve_device(device))
        frames, score = play(agent, config, env, obs, screen, out, seed=seed, max_frames=max_frames)
    except gym.error.DependencyNotInstalled as error:  # pygame, for classic control's screen
        raise UserError(f"--video needs the optional [report] extra ({error}): {INSTALL}") from None
    finally:
        env.close()
        screen.env.close()
    return Clip(out, checkpoint_file, frames, screen.fps, score)


def play(
    agent: DQNAgent,
    config: configs.Config,
    env: gym.vector.VectorEnv,
    obs: np.ndarray,
    screen: Screen,
    out: Path,
    *,
    seed: int,
    max_frames: int | None,
) -> tuple[int, float | None]:
    """One game at eval ε, as evaluate.py plays it, with the screen written to `out`.

    Returns:
        frames: frames written (the first screen and one after each step).
        score: the game's raw score, or None if the clip filled up first.
    """
    agent.online.eval()
    agent.rng = np.random.default_rng(seed)  # ε-noise follows the seed, as in evaluate.py
    epsilon = config.agent.eval_epsilon
    with open_writer(out, screen.fps) as writer:
        recorder = Recorder(env, screen, writer, max_frames=max_frames or 2**62)
        try:
            recorder.start(seed)
            games = play_episodes(
                recorder,
                obs,
                lambda o: agent.act(o, epsilon),
                1,
                life_loss_terminal=config.env.terminal_on_life_loss,
            )
        except ClipFull:
            return recorder.frames, None
    return recorder.frames, games[0].score


def open_writer(out: Path, fps: float):
    """An imageio ffmpeg writer for H.264 MP4 at the frames' own size (macro_block_size=1: no
    rescaling to multiples of 16, so a 210x160 Atari screen stays 210x160)."""
    import imageio.v2 as imageio

    if not out.parent.is_dir():
        raise UserError(f"Cannot write the video {out}: folder {out.parent} does not exist.")
    return imageio.get_writer(
        out,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        macro_block_size=1,
        pixelformat="yuv420p",
        ffmpeg_log_level="error",
    )
