"""Real ALE and classic-control envs through make_env: shapes, protocol, rewards, episodes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from configs import UserError, resolve
from envs import (
    EpisodeTracker,
    clip_rewards,
    human_normalized,
    make_env,
    play_episodes,
    resolve_env_id,
)

ATARI = resolve().env


def atari(**changes):
    return dataclasses.replace(ATARI, **changes)


@pytest.mark.parametrize("name", ["Pong", "pong", "ALE/Pong-v5", "PongNoFrameskip-v4"])
def test_every_spelling_of_a_game_names_the_same_rom(name):
    assert resolve_env_id(name) == ("pong", True)


def test_default_protocol_is_machado_2018():
    assert (ATARI.sticky_actions, ATARI.frame_skip, ATARI.frame_stack) == (0.25, 4, 4)
    # Sticky actions instead of no-op starts, and the minimal action set, as Dopamine.
    assert (ATARI.noop_max, ATARI.max_episode_frames) == (0, 108_000)
    assert not ATARI.full_action_space
    assert ATARI.clip_rewards and not ATARI.terminal_on_life_loss


def test_the_minimal_action_set_is_the_default_and_the_full_one_an_option():
    for full, actions in [(False, 4), (True, 18)]:  # Breakout: NOOP, FIRE, RIGHT, LEFT
        env, spec, _ = make_env("Breakout", 1, 0, atari(full_action_space=full))
        env.close()
        assert spec.num_actions == actions


def test_a_few_hundred_pong_steps_give_uint8_frame_stacks():
    env, spec, obs = make_env("Pong", 2, 0, ATARI)
    try:
        assert (spec.name, spec.is_atari, spec.num_actions, spec.frame_stack) == (
            "pong",
            True,
            6,
            4,
        )
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        rng = np.random.default_rng(0)
        for _ in range(300):
            obs, rewards, terminated, truncated, _ = env.step(rng.integers(6, size=2))
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert rewards.shape == terminated.shape == truncated.shape == (2,)
        # Each new observation shifts the stack by one frame: the last three frames of step t are
        # the first three of step t+1 (within an episode).
        nxt, *_ = env.step(rng.integers(6, size=2))
        assert np.array_equal(nxt[:, :3], obs[:, 1:])
    finally:
        env.close()


def first_frames(sticky: float, actions: np.ndarray) -> np.ndarray:
    env, _, _ = make_env("Breakout", 1, 3, atari(sticky_actions=sticky, noop_max=0))
    try:
        frames = [env.step(np.array([a]))[0][0, -1] for a in actions]
    finally:
        env.close()
    return np.stack(frames)


def test_sticky_actions_reach_the_emulator():
    # Breakout's paddle moves with actions 2 (right) and 3 (left). With repeat probability 1 every
    # action is replaced by the previous one (NOOP from the reset), so the screen cannot depend on
    # the actions; with probability 0 it must.
    right, left = np.full(40, 2), np.full(40, 3)
    assert np.array_equal(first_frames(1.0, right), first_frames(1.0, left))
    assert not np.array_equal(first_frames(0.0, right), first_frames(0.0, left))


def test_raw_scores_are_logged_while_rewards_are_clipped_for_learning():
    # Space Invaders pays 5 to 30 points an invader; a 2,000-frame cap truncates at step 500.
    env, _, _ = make_env("SpaceInvaders", 1, 0, atari(max_episode_frames=2000))
    tracker = EpisodeTracker(1)
    rng = np.random.default_rng(1)
    raw_total, clipped_total, steps, finished = 0.0, 0.0, 0, []
    try:
        while not finished:
            steps += 1
            _, rewards, terminated, truncated, info = env.step(rng.integers(6, size=1))
            valid, finished = tracker.step(rewards, terminated, truncated, info["lives"])
            raw_total += float(rewards.sum())
            clipped_total += float(clip_rewards(rewards).sum())
    finally:
        env.close()
    assert raw_total > clipped_total > 0  # some rewards were above 1
    assert finished[0].score == raw_total
    assert finished[0].length == steps <= 500  # 2,000 frames / frame skip 4


def test_the_autoreset_step_is_flagged_invalid_and_starts_a_fresh_stack():
    env, _, _ = make_env("Pong", 1, 0, atari(max_episode_frames=400))  # truncates at step 100
    tracker = EpisodeTracker(1)
    try:
        for step in range(1, 102):
            obs, rewards, terminated, truncated, info = env.step(np.array([0]))
            valid, finished = tracker.step(rewards, terminated, truncated, info["lives"])
            if step <= 100:
                assert valid[0]
            assert bool(truncated[0]) == (step == 100)
    finally:
        env.close()
    assert not valid[0] and rewards[0] == 0
    assert not obs[0, :3].any() and obs[0, 3].any()  # a reset stack: three blank frames, then one


def test_life_loss_terminal_keeps_scoring_the_whole_game():
    tracker = EpisodeTracker(1, life_loss_terminal=True)
    term, trunc = np.array([True]), np.array([False])
    valid, finished = tracker.step(np.array([7.0]), term, trunc, lives=np.array([2]))
    assert valid[0] and finished == []  # a life lost, the game goes on
    valid, finished = tracker.step(np.array([3.0]), term, trunc, lives=np.array([0]))
    assert finished[0].score == 10.0 and finished[0].length == 2
    valid, _ = tracker.step(np.array([0.0]), np.array([False]), trunc, lives=np.array([3]))
    assert not valid[0]  # the reset row after game over


def play_fire(config, seed: int, steps: int) -> list[tuple]:
    """(reward, terminated, truncated, lives, valid, finished) per step of Breakout, FIRE always."""
    env, _, _ = make_env("Breakout", 1, seed, config)
    tracker = EpisodeTracker(1, life_loss_terminal=config.terminal_on_life_loss)
    rows = []
    try:
        for _ in range(steps):
            _, reward, term, trunc, info = env.step(np.array([1]))
            valid, finished = tracker.step(
                reward, term, trunc, info["lives"], info["episode_frame_number"]
            )
            rows.append((reward[0], term[0], trunc[0], info["lives"][0], valid[0], finished))
    finally:
        env.close()
    return rows


def test_a_game_over_that_the_flags_do_not_announce_is_found_from_the_frame_counter():
    # A life lost on the very step that reaches the frame cap: ale-py ends the game (it resets
    # on the next step) but reports terminated, not truncated, with lives left. Lives alone would
    # take the reset row for a transition and sum two games into one score.
    config = atari(terminal_on_life_loss=True)
    rows = play_fire(config, 5, 200)
    first_loss = next(i for i, row in enumerate(rows) if row[1])  # a step index, 0-based
    cap = 4 * (first_loss + 1)  # no no-op starts: the game's frame count is 4 per step
    capped = play_fire(atari(terminal_on_life_loss=True, max_episode_frames=cap), 5, first_loss + 4)
    reward, term, trunc, lives, valid, finished = capped[first_loss]
    assert term and not trunc and lives > 0 and valid and finished == []
    _, _, _, _, valid, finished = capped[first_loss + 1]  # the reset row
    assert not valid
    assert [(g.score, g.length) for g in finished] == [
        (sum(row[0] for row in capped[: first_loss + 1]), first_loss + 1)
    ]
    assert all(row[4] for row in capped[first_loss + 2 :])  # the next game counts again


def test_cartpole_is_a_vector_env_with_vector_observations():
    env, spec, obs = make_env("CartPole-v1", 3, 0, ATARI)
    env.close()
    assert (spec.is_atari, spec.obs_shape, spec.num_actions, spec.frame_stack) == (
        False,
        (4,),
        2,
        1,
    )
    assert obs.shape == (3, 4) and obs.dtype == np.float32


def test_play_episodes_counts_each_env_quota_of_whole_games():
    env, _, obs = make_env("CartPole-v1", 2, 0, ATARI)
    rng = np.random.default_rng(0)
    try:
        games = play_episodes(env, obs, lambda o: rng.integers(2, size=len(o)), 5)
    finally:
        env.close()
    assert [g.env_index for g in games] == [0, 0, 0, 1, 1]
    assert all(g.score == g.length for g in games)  # CartPole pays 1 per step


def test_unknown_env_names_the_closest_ids():
    with pytest.raises(UserError, match=r"Unknown environment 'Pongg'.*Closest valid ids: Pong"):
        resolve_env_id("Pongg")
    with pytest.raises(UserError, match="CartPole-v1"):
        resolve_env_id("CartPol-v1")


def test_human_normalized_score_uses_the_reference_figures():
    # Pong: random -20.7, human 14.6.
    assert human_normalized("pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("pong", -3.05) == pytest.approx(0.5)
    assert human_normalized("not_a_game", 1.0) is None
