"""Tests of replay.ReplayBuffer: frame stacks, episode boundaries, n-step targets, vector envs.

Frames carry a unique integer id (two uint8 bytes, 0 is the reset padding frame), so every stack
can be read back as a tuple of ids and checked against what was fed in.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from replay import Batch, ReplayBuffer

Key = tuple  # (obs ids, action, reward, discount, next_obs ids)


def frame(fid: int) -> np.ndarray:
    return np.array([fid // 256, fid % 256], np.uint8)


def ids(obs: torch.Tensor | np.ndarray) -> tuple[int, ...]:
    """Frame ids of one observation, [S, 2] or [2]."""
    o = np.asarray(obs, np.int64).reshape(-1, 2)
    return tuple(int(v) for v in o[:, 0] * 256 + o[:, 1])


class ScriptedVectorEnv:
    """Feeds a buffer like a gymnasium 1.x vector env with next-step autoreset.

    Env e plays episodes whose lengths and ends cycle through `script[e]` ((length, "term" or
    "trunc") pairs). After an episode ends, that env's next row is the autoreset row: its pair
    (final obs -> first obs of the next episode) is passed with valid=False.
    """

    def __init__(self, script: list[list[tuple[int, str]]], stack: int, first_id: int = 1) -> None:
        self.script = [itertools.cycle(s) for s in script]
        self.stack, self.next_id = stack, first_id
        self.length, self.end, self.t = [0] * len(script), [""] * len(script), [0] * len(script)
        self.obs = [self._reset(e) for e in range(len(script))]
        self.episodes: list[list[list[tuple]]] = [[[]] for _ in script]  # env -> episode -> steps
        self.ended = [False] * len(script)
        self.autoreset_pairs: list[tuple] = []

    def _reset(self, e: int) -> list[int]:
        self.length[e], self.end[e] = next(self.script[e])
        self.t[e] = 0
        return [0] * (self.stack - 1) + [self._new_id()]

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def run(self, buffer: ReplayBuffer, steps: int) -> None:
        for _ in range(steps):
            rows = [self._row(e) for e in range(len(self.obs))]
            cols = list(zip(*rows, strict=True))
            obs, nxt = self._array(cols[0]), self._array(cols[3])
            action, reward = np.array(cols[1]), np.array(cols[2], np.float32)
            buffer.add(obs, action, reward, nxt, np.array(cols[4]), np.array(cols[5]),
                       valid=np.array(cols[6]))  # fmt: skip

    def _row(self, e: int) -> tuple:
        obs = self.obs[e]
        if self.ended[e]:  # autoreset row: the action is ignored, the pair is not a transition
            self.obs[e], self.ended[e] = self._reset(e), False
            self.episodes[e].append([])
            self.autoreset_pairs.append((tuple(obs), tuple(self.obs[e])))
            return obs, 0, 0.0, self.obs[e], False, False, False
        self.t[e] += 1
        nxt = obs[1:] + [self._new_id()] if self.stack > 1 else [self._new_id()]
        done = self.t[e] == self.length[e]
        term, trunc = done and self.end[e] == "term", done and self.end[e] == "trunc"
        action, reward = obs[-1] % 4, float(obs[-1] % 5 - 1)
        self.episodes[e][-1].append((tuple(obs), action, reward, tuple(nxt), term, trunc))
        self.obs[e], self.ended[e] = nxt, done
        return obs, action, reward, nxt, term, trunc, True

    def _array(self, stacks: tuple) -> np.ndarray:
        out = np.stack([np.stack([frame(f) for f in s]) for s in stacks])
        return out if self.stack > 1 else out[:, 0]

    def truncate_running(self) -> None:
        """Mark each running episode's newest step truncated: what a resume makes of it."""
        for e, episodes in enumerate(self.episodes):
            if episodes[-1] and not self.ended[e]:
                *head, (obs, action, reward, nxt, _, _) = episodes[-1]
                episodes[-1] = [*head, (obs, action, reward, nxt, False, True)]

    def expected(self, n: int, gamma: float) -> set[Key]:
        """Reference n-step transitions, straight from the definition, over all episodes."""
        out = set()
        for steps in itertools.chain(*self.episodes):
            over = bool(steps) and (steps[-1][4] or steps[-1][5])
            for t in range(len(steps)):
                m = min(n, len(steps) - t)
                if m < n and not over:
                    continue  # window not written yet
                ret = sum(gamma**k * steps[t + k][2] for k in range(m))
                discount = 0.0 if (t + m == len(steps) and steps[-1][4]) else gamma**m
                out.add((steps[t][0], steps[t][1], ret, discount, steps[t + m - 1][3]))
        return out


def sampled(buffer: ReplayBuffer, draws: int = 3000) -> set[Key]:
    """Distinct transitions among many draws (enough to see every one of a small buffer)."""
    b = buffer.sample(draws)
    rows = zip(b.obs, b.action, b.reward, b.discount, b.next_obs, strict=True)
    return {(ids(o), int(a), float(r), float(d), ids(n)) for o, a, r, d, n in rows}


def test_first_obs_of_a_new_episode_is_its_padding_plus_first_frame() -> None:
    env = ScriptedVectorEnv([[(3, "term")]], stack=4)
    rb = ReplayBuffer(100, 1, (4, 2), np.uint8, frame_stack=4, seed=1)
    env.run(rb, 7)  # episode 1: frames 1..4; autoreset row 4 -> 5; episode 2: frames 5..8
    got = {(k[0], k[4]) for k in sampled(rb)}
    assert got == {
        ((0, 0, 0, 1), (0, 0, 1, 2)),
        ((0, 0, 1, 2), (0, 1, 2, 3)),
        ((0, 1, 2, 3), (1, 2, 3, 4)),
        ((0, 0, 0, 5), (0, 0, 5, 6)),  # no frame of episode 1 leaks into episode 2's stack
        ((0, 0, 5, 6), (0, 5, 6, 7)),
        ((0, 5, 6, 7), (5, 6, 7, 8)),
    }


def _add_episode(rb: ReplayBuffer, rewards: list[float], end: str | None) -> None:
    """One env, obs [t] at step t; the last step ends the episode with `end` (None: running)."""
    for t, r in enumerate(rewards):
        last = t == len(rewards) - 1
        obs, nxt = np.array([[t]], np.float32), np.array([[t + 1]], np.float32)
        term, trunc = np.array([last and end == "term"]), np.array([last and end == "trunc"])
        rb.add(obs, np.array([t]), np.array([r]), nxt, term, trunc)


def _by_obs(rb: ReplayBuffer) -> dict[int, tuple[float, float, int]]:
    b = rb.sample(500)
    return {int(o): (float(r), float(d), int(n)) for o, r, d, n in
            zip(b.obs[:, 0], b.reward, b.discount, b.next_obs[:, 0], strict=True)}  # fmt: skip


def test_n_step_returns_stop_at_a_termination_without_bootstrap() -> None:
    rb = ReplayBuffer(50, 1, (1,), np.float32, n_step=3, gamma=0.5)
    _add_episode(rb, [1, 2, 4, 8, 16], end="term")  # obs 0..4, final obs 5
    assert len(rb) == 5
    assert _by_obs(rb) == {
        0: (1 + 0.5 * 2 + 0.25 * 4, 0.125, 3),
        1: (2 + 0.5 * 4 + 0.25 * 8, 0.125, 4),
        2: (4 + 0.5 * 8 + 0.25 * 16, 0.0, 5),  # 3 steps before the end: m = 3, terminated
        3: (8 + 0.5 * 16, 0.0, 5),  # 2 steps before the end
        4: (16, 0.0, 5),  # last step
    }


def test_n_step_returns_bootstrap_from_the_final_obs_at_a_truncation() -> None:
    rb = ReplayBuffer(50, 1, (1,), np.float32, n_step=3, gamma=0.5)
    _add_episode(rb, [1, 2, 4, 8, 16], end="trunc")
    assert _by_obs(rb) == {
        0: (3.0, 0.125, 3),
        1: (6.0, 0.125, 4),
        2: (12.0, 0.125, 5),  # gamma^3, next obs is the final obs 5
        3: (16.0, 0.25, 5),
        4: (16.0, 0.5, 5),
    }


def test_transitions_whose_n_step_window_is_unwritten_are_not_sampled() -> None:
    rb = ReplayBuffer(50, 1, (1,), np.float32, n_step=3, gamma=0.5)
    _add_episode(rb, [1, 2, 4, 8], end=None)  # running: obs 2 and 3 lack two later steps
    assert len(rb) == 2 and rb.can_sample(2) and not rb.can_sample(3)
    assert _by_obs(rb) == {0: (3.0, 0.125, 3), 1: (6.0, 0.125, 4)}


def test_autoreset_rows_are_never_stored() -> None:
    env = ScriptedVectorEnv([[(2, "term"), (2, "trunc")]], stack=1)
    rb = ReplayBuffer(100, 1, (2,), np.uint8, seed=2)
    env.run(rb, 8)  # 1->2->3 | 4->5->6 | 7->8->9, autoreset rows 3->4 and 6->7 skipped
    assert env.autoreset_pairs == [((3,), (4,)), ((6,), (7,))]
    got = {(k[0][0], k[4][0]) for k in sampled(rb)}
    assert got == {(1, 2), (2, 3), (4, 5), (5, 6), (7, 8), (8, 9)}


INTERLEAVED = [
    [(2, "term"), (5, "trunc")],
    [(4, "trunc"), (1, "term"), (3, "term")],
    [(7, "term")],
]


@pytest.mark.parametrize("n_step", [1, 3])
def test_interleaved_envs_give_exactly_the_transitions_added(n_step: int) -> None:
    env = ScriptedVectorEnv(INTERLEAVED, stack=4)
    rb = ReplayBuffer(300, 3, (4, 2), np.uint8, frame_stack=4, n_step=n_step, gamma=0.5)
    env.run(rb, 25)
    expected = env.expected(n_step, 0.5)
    assert len(rb) == len(expected)
    assert sampled(rb) == expected


def test_ring_wraparound_only_yields_genuine_transitions() -> None:
    env = ScriptedVectorEnv(INTERLEAVED, stack=4)
    rb = ReplayBuffer(72, 3, (4, 2), np.uint8, frame_stack=4, n_step=3, gamma=0.5, seed=3)
    env.run(rb, 400)  # about 15 times the 24 slots of each env's stream
    got = sampled(rb)
    assert got <= env.expected(3, 0.5)
    assert 0 < len(rb) <= len(got) <= 72
    # The newest finished episode of each env is fully written and not yet overwritten.
    for episodes in env.episodes:
        last_done = [ep for ep in episodes if ep and (ep[-1][4] or ep[-1][5])][-1]
        assert {k[0] for k in got} >= {step[0] for step in last_done}


def test_vector_observations_round_trip_as_float32() -> None:
    rb = ReplayBuffer(64, 2, (4,), np.float32, seed=4)
    obs = np.array([[0.5, -1.0, 2.0, 0.0], [1.5, 3.0, -2.0, 0.25]], np.float32)
    rb.add(obs, np.array([1, 0]), np.array([1.0, 0.5]), obs + 10, np.zeros(2, bool),
           np.array([False, True]))  # fmt: skip
    b = rb.sample(64)
    assert b.obs.dtype == torch.float32 and b.obs.shape == (64, 4)
    assert b.action.dtype == torch.int64 and b.reward.dtype == b.discount.dtype == torch.float32
    rows = {(tuple(o.tolist()), int(a), float(r), tuple(n.tolist())) for o, a, r, n in
            zip(b.obs, b.action, b.reward, b.next_obs, strict=True)}  # fmt: skip
    assert rows == {
        ((0.5, -1.0, 2.0, 0.0), 1, 1.0, (10.5, 9.0, 12.0, 10.0)),
        ((1.5, 3.0, -2.0, 0.25), 0, 0.5, (11.5, 13.0, 8.0, 10.25)),  # truncated: still bootstraps
    }
    assert torch.equal(b.discount, torch.full((64,), 0.99))


def test_atari_buffer_costs_at_most_7200_bytes_per_transition() -> None:
    rb = ReplayBuffer(10_000, 4, (4, 84, 84), np.uint8, frame_stack=4, n_step=3)
    assert rb.nbytes() == 10_000 * (84 * 84 + 4 + 4 + 1)  # frame, action, reward, flags
    assert rb.nbytes() / 10_000 <= 7_200


def test_state_dict_round_trip_gives_identical_samples(tmp_path) -> None:
    env = ScriptedVectorEnv(INTERLEAVED, stack=4)
    rb = ReplayBuffer(72, 3, (4, 2), np.uint8, frame_stack=4, n_step=3, gamma=0.5, seed=5)
    env.run(rb, 100)
    torch.save(rb.state_dict(), tmp_path / "replay.pt")
    restored = ReplayBuffer(72, 3, (4, 2), np.uint8, frame_stack=4, n_step=3, gamma=0.5, seed=9)
    restored.load_state_dict(torch.load(tmp_path / "replay.pt", weights_only=True))
    rb.truncate_running()  # what loading does to the episodes the saved envs were playing
    assert len(restored) == len(rb)
    for _ in range(3):
        a, b = rb.sample(32), restored.sample(32)
        for x, y in zip(a._fields(), b._fields(), strict=True):
            assert torch.equal(x, y)


@pytest.mark.parametrize("n_step", [1, 3])
def test_a_resumed_buffer_never_joins_two_episodes(tmp_path, n_step: int) -> None:
    before = ScriptedVectorEnv(INTERLEAVED, stack=4)
    rb = ReplayBuffer(1500, 3, (4, 2), np.uint8, frame_stack=4, n_step=n_step, gamma=0.5)
    before.run(rb, 34)  # every env is mid-episode at step 34
    assert not any(before.ended) and all(ep[-1] for ep in before.episodes)
    torch.save(rb.state_dict(), tmp_path / "replay.pt")
    resumed = ReplayBuffer(1500, 3, (4, 2), np.uint8, frame_stack=4, n_step=n_step, gamma=0.5)
    resumed.load_state_dict(torch.load(tmp_path / "replay.pt", weights_only=True))
    after = ScriptedVectorEnv(INTERLEAVED, stack=4, first_id=1000)  # the envs start afresh
    after.run(resumed, 20)
    # The episodes cut by the resume end truncated at their last stored step, bootstrapping from
    # its real next frame; the new episodes start with their own stacks; nothing mixes the two.
    before.truncate_running()
    expected = before.expected(n_step, 0.5) | after.expected(n_step, 0.5)
    assert len(resumed) == len(expected)
    assert sampled(resumed, 8000) == expected


def test_batch_to_moves_every_field() -> None:
    rb = ReplayBuffer(50, 1, (1,), np.float32, n_step=3, gamma=0.5)
    _add_episode(rb, [1, 2, 4], end="term")
    moved = rb.sample(4).to("meta")
    assert isinstance(moved, Batch)
    assert {t.device.type for t in moved._fields()} == {"meta"}


def test_sampling_with_an_outside_generator_leaves_the_buffer_stream_alone() -> None:
    # The probe batch is drawn with its own generator: the training batches must not change.
    env = ScriptedVectorEnv(INTERLEAVED, stack=4)
    watched = ReplayBuffer(72, 3, (4, 2), np.uint8, frame_stack=4, n_step=3, gamma=0.5, seed=5)
    alone = ReplayBuffer(72, 3, (4, 2), np.uint8, frame_stack=4, n_step=3, gamma=0.5, seed=5)
    env.run(watched, 100)
    ScriptedVectorEnv(INTERLEAVED, stack=4).run(alone, 100)
    watched.sample(16, rng=np.random.default_rng(1))
    for x, y in zip(watched.sample(32)._fields(), alone.sample(32)._fields(), strict=True):
        assert torch.equal(x, y)
