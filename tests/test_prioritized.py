"""Prioritized replay: the sum tree's draws, priorities on the uniform buffer's slots, IS weights,
max-priority insertion, checkpoints, and the learner's side (weighted loss, priorities back).

The witness is test_replay's: frames carry ids, so every transition a prioritized buffer gives is
checked against what was fed in, under the same n-step and episode-boundary rules.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from test_replay import INTERLEAVED, ScriptedVectorEnv, _add_episode, sampled

from agents import build_agent
from configs import resolve
from envs import EnvSpec
from replay import Batch, PrioritizedReplayBuffer, SumTree, make_replay
from replay.buffer import _HAS


def per_buffer(capacity: int, envs: int, **kwargs) -> PrioritizedReplayBuffer:
    return PrioritizedReplayBuffer(capacity, envs, (4, 2), np.uint8, frame_stack=4, **kwargs)


def stored(rb: PrioritizedReplayBuffer) -> np.ndarray:
    """Slots holding a transition."""
    return np.flatnonzero(rb._flags_flat & _HAS)


def test_sum_tree_draws_each_leaf_in_proportion_to_its_value() -> None:
    rng = np.random.default_rng(0)
    values = rng.gamma(0.5, size=1000) * (rng.random(1000) > 0.2)  # skewed, a fifth are zero
    tree = SumTree(1000)  # 16^3 = 4096 leaves, the rest padding
    tree.set(np.arange(1000), values)
    assert tree.total() == pytest.approx(values.sum(), rel=1e-12)
    counts = np.bincount(tree.sample(400_000, np.random.default_rng(1)), minlength=4096)
    assert counts[1000:].sum() == 0 and counts[:1000][values == 0].sum() == 0
    live = values > 0
    expected = values[live] / values.sum() * counts.sum()
    assert chisquare(counts[:1000][live], expected).pvalue > 0.01


def test_sum_tree_batch_updates_keep_every_node_the_sum_of_its_children() -> None:
    tree, rng = SumTree(300, fanout=4), np.random.default_rng(2)
    for _ in range(50):  # batches with repeated indices, as a sampled batch has
        tree.set(rng.integers(0, 300, size=32), rng.random(32))
    for child, parent in zip(tree.levels[1:], tree.levels[:-1], strict=True):
        np.testing.assert_array_equal(parent, child.reshape(-1, 4).sum(1))
    # Cumulative ranges: a mass just inside leaf i's range finds leaf i.
    edges = np.concatenate([[0.0], np.cumsum(tree.leaves)])
    nonzero = np.flatnonzero(tree.leaves > 0)
    inside = (edges[nonzero] + edges[nonzero + 1]) / 2
    np.testing.assert_array_equal(tree.find(inside), nonzero)


@pytest.mark.parametrize("n_step", [1, 3])
def test_prioritized_draws_give_exactly_the_transitions_added(n_step: int) -> None:
    env = ScriptedVectorEnv(INTERLEAVED, stack=4)
    rb = per_buffer(300, 3, n_step=n_step, gamma=0.5)
    env.run(rb, 25)
    assert sampled(rb) == env.expected(n_step, 0.5)


def test_after_the_ring_wraps_only_stored_transitions_hold_priority() -> None:
    env = ScriptedVectorEnv(INTERLEAVED, stack=4)
    rb = per_buffer(72, 3, n_step=3, gamma=0.5, seed=3)
    env.run(rb, 400)  # about 15 laps of each env's 24 slots
    np.testing.assert_array_equal(np.flatnonzero(rb.tree.leaves), stored(rb))
    assert sampled(rb) <= env.expected(3, 0.5)


def test_draws_follow_priorities_over_sampleable_slots_only() -> None:
    rb = PrioritizedReplayBuffer(50, 1, (1,), np.float32, n_step=3, gamma=0.5, alpha=0.5)
    _add_episode(rb, [1, 2, 4, 8, 16, 32, 64], end=None)  # obs 5 and 6: window not written
    slots = stored(rb)
    assert slots.tolist() == list(range(7))
    rb.update_priorities(slots, torch.tensor([1.0, 4.0, 9.0, 16.0, 25.0, 36.0, 49.0]))
    batch = rb.sample(200_000)
    counts = np.bincount(batch.index, minlength=7)
    assert counts[5] == counts[6] == 0  # pending: rejected exactly as the uniform buffer does
    p = np.arange(1, 6, dtype=np.float64)  # p^α = sqrt([1, 4, 9, 16, 25])
    assert chisquare(counts[:5], p / p.sum() * counts.sum()).pvalue > 0.01
    # Each slot's transition is the one the uniform buffer gives for it.
    obs = batch.obs[:, 0].numpy()
    np.testing.assert_array_equal(obs, batch.index.astype(np.float32))


def test_an_observer_can_draw_uniformly_whatever_the_priorities() -> None:
    rb = PrioritizedReplayBuffer(50, 1, (1,), np.float32, n_step=1, gamma=0.5, alpha=1.0)
    _add_episode(rb, [1, 2, 4, 8, 16], end="term")
    rb.update_priorities(stored(rb), torch.tensor([1.0, 1.0, 1.0, 1.0, 1000.0]))
    counts = np.bincount(rb.sample(50_000, uniform=True).index, minlength=5)
    assert chisquare(counts).pvalue > 0.01  # equal frequencies, not 1:1:1:1:1000
    assert np.bincount(rb.sample(50_000).index, minlength=5)[4] > 45_000


def test_importance_weights_follow_the_formula() -> None:
    rb = PrioritizedReplayBuffer(50, 1, (1,), np.float32, alpha=0.5, beta=0.5)
    _add_episode(rb, [0, 0, 0, 0], end="term")
    rb.update_priorities(np.arange(4), torch.tensor([1.0, 4.0, 9.0, 16.0]))
    # p^α = [1, 2, 3, 4]: P = [.1, .2, .3, .4], N = 4; w_i = (N P_i)^-β / max_j w_j.
    np.testing.assert_allclose(rb.probabilities(np.arange(4)), [0.1, 0.2, 0.3, 0.4])
    batch = rb.sample(200)
    assert 0 in batch.index  # P(miss) = 0.9^200
    raw = (4 * np.array([0.1, 0.2, 0.3, 0.4])) ** -0.5
    expected = raw[batch.index] / raw[batch.index].max()
    np.testing.assert_allclose(batch.weight.numpy(), expected, rtol=1e-6)
    assert sorted({round(float(w), 4) for w in batch.weight}) == [0.5, 0.5774, 0.7071, 1.0]


def test_new_transitions_enter_at_the_largest_priority_seen() -> None:
    rb = PrioritizedReplayBuffer(50, 1, (1,), np.float32, alpha=0.5)
    _add_episode(rb, [0, 0], end=None)
    np.testing.assert_allclose(rb.tree.get(np.arange(2)), [1.0, 1.0])  # max starts at 1
    rb.update_priorities(np.array([0, 1]), torch.tensor([9.0, 0.25]))
    _add_episode(rb, [0], end=None)
    np.testing.assert_allclose(rb.tree.get(np.arange(3)), [3.0, 0.5, 3.0])  # sqrt(9) = 3
    rb.update_priorities(np.array([2]), torch.tensor([4.0]))  # lower: the maximum stays 9
    _add_episode(rb, [0], end=None)
    assert rb.tree.get(np.array([3]))[0] == pytest.approx(3.0)


def test_an_overwritten_slot_keeps_no_priority_from_a_late_update() -> None:
    rb = PrioritizedReplayBuffer(8, 1, (1,), np.float32)
    _add_episode(rb, [0] * 6, end="term")
    batch = rb.sample(4)
    _add_episode(rb, [0] * 6, end="term")  # overwrites the ring before the priorities return
    rb.update_priorities(batch.index, torch.full((4,), 5.0))
    np.testing.assert_array_equal(np.flatnonzero(rb.tree.leaves), stored(rb))


def test_checkpoint_round_trip_keeps_priorities(tmp_path) -> None:
    env = ScriptedVectorEnv(INTERLEAVED, stack=4)
    rb = per_buffer(72, 3, n_step=3, gamma=0.5, seed=5)
    env.run(rb, 100)
    slots = stored(rb)
    rb.update_priorities(slots, torch.linspace(0.5, 20.0, len(slots)))
    torch.save(rb.state_dict(), tmp_path / "replay.pt")
    restored = per_buffer(72, 3, n_step=3, gamma=0.5, seed=9)
    restored.load_state_dict(torch.load(tmp_path / "replay.pt", weights_only=True))
    rb.truncate_running()
    np.testing.assert_array_equal(restored.tree.leaves, rb.tree.leaves)
    assert restored.max_priority == rb.max_priority == pytest.approx(20.0)
    for _ in range(3):
        a, b = rb.sample(32), restored.sample(32)
        np.testing.assert_array_equal(a.index, b.index)
        for x, y in zip(a._fields(), b._fields(), strict=True):
            assert torch.equal(x, y)


def test_the_per_option_builds_a_prioritized_buffer() -> None:
    config = resolve(variant="per").replay
    rb = make_replay(config, 1, (4,), np.float32, frame_stack=1, n_step=1, gamma=0.99, seed=0)
    assert isinstance(rb, PrioritizedReplayBuffer) and (rb.alpha, rb.beta) == (0.5, 0.5)
    plain = make_replay(resolve().replay, 1, (4,), np.float32, frame_stack=1, n_step=1,
                        gamma=0.99, seed=0)  # fmt: skip
    assert type(plain).__name__ == "ReplayBuffer"


SPEC = EnvSpec("CartPole-v1", False, (4,), np.dtype("float32"), 2, 1)


def test_importance_weights_scale_each_sample_in_the_loss() -> None:
    # Weights [2, 0] on (s1, s2) give the gradient of the unweighted batch (s1, s1).
    config = resolve(preset="classic", variant="per", assignments=["agent.lr=1e-2"])
    obs = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    twice = obs[[0, 0]]

    def batch(o: torch.Tensor, weight: torch.Tensor) -> Batch:
        return Batch(o, torch.tensor([0, 1]), torch.ones(2), torch.full((2,), 0.9), o, weight)

    torch.manual_seed(3)
    weighted = build_agent(config, SPEC, torch.device("cpu"))
    torch.manual_seed(3)
    plain = build_agent(config, SPEC, torch.device("cpu"))
    weighted.update(batch(obs, torch.tensor([2.0, 0.0])))
    plain.update(Batch(twice, torch.tensor([0, 0]), torch.ones(2), torch.full((2,), 0.9), twice))
    for a, b in zip(weighted.online.parameters(), plain.online.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert weighted.priorities.shape == (2,)  # one priority per sample, weight or not


def test_priorities_returned_by_the_learner_are_its_td_errors() -> None:
    config = resolve(preset="classic", variant="per+huber", assignments=["agent.double=false"])
    agent = build_agent(config, SPEC, torch.device("cpu"))
    with torch.no_grad():
        for net in (agent.online, agent.target):
            net.head.out.weight.zero_()
            net.head.out.bias.copy_(torch.tensor([2.0, 3.0]))
    obs = torch.zeros(2, 4)
    # Q(s, ·) = [2, 3]; targets r + 0.5 * 3: 2.5 for action 0 (|δ| = 0.5, Huber 0.125) and 6.5
    # for action 1 (|δ| = 3.5, Huber's linear part 3.0); priorities are |δ|, not the loss.
    batch = Batch(obs, torch.tensor([0, 1]), torch.tensor([1.0, 5.0]), torch.full((2,), 0.5), obs)
    agent.update(batch)
    torch.testing.assert_close(agent.priorities, torch.tensor([0.5, 3.5]))
    assert math.isfinite(float(agent.priorities.sum()))


def test_an_encoded_head_returns_the_kl_to_its_target_as_priority() -> None:
    # HL-Gauss on the classic support (-10..110, Δ = 2.4, σ = 1.8). Both networks output, for every
    # state, the encodings of 10 (action 0) and 20 (action 1): Q̄(s', a*) = 20. Rewards 0 and 10
    # with discount 0.5 give targets 10 and 20, each fitted exactly by its action (priority 0,
    # where the cross-entropy is the target's entropy, 1.20 nats); reward 5 gives 15 against 10.
    config = resolve(preset="classic", variant="per+hl_gauss", assignments=["agent.double=false"])
    agent = build_agent(config, SPEC, torch.device("cpu"))
    support = agent.online.head.support.double()
    edges = torch.cat([support - 1.2, support[-1:] + 1.2])

    def encoded(v: float) -> torch.Tensor:  # N(v, 1.8²) mass per bin, renormalised, in float64
        cdf = torch.special.ndtr((edges - v) / 1.8)
        return (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0])

    logits = torch.cat([encoded(10.0), encoded(20.0)]).clamp_min(1e-30).log().float()
    with torch.no_grad():
        for net in (agent.online, agent.target):
            net.head.out.weight.zero_()
            net.head.out.bias.copy_(logits)
    obs = torch.zeros(3, 4)
    reward = torch.tensor([0.0, 10.0, 5.0])
    agent.update(Batch(obs, torch.tensor([0, 1, 0]), reward, torch.full((3,), 0.5), obs))
    p, log_q = encoded(15.0), logits[: len(support)].double().log_softmax(0)
    kl = float(torch.where(p > 0, p * (p.log() - log_q), 0.0).sum())  # KL(target ‖ prediction)
    torch.testing.assert_close(agent.priorities, torch.tensor([0.0, 0.0, kl]), atol=1e-5, rtol=1e-4)
