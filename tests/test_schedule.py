"""The probe schedule: a batch of distinct replay states, drawn once learning starts, baselined on
the initial network at every draw, and saved so that a resume measures the same states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import probes
from configs import resolve
from networks import build_network
from probes.schedule import BASELINE, UPDATE_BATCH, ProbeSchedule, distinct_states
from replay import ReplayBuffer


def replay_of_repeated_games(games: int, length: int = 10) -> ReplayBuffer:
    """`games` episodes of one env that each replay the same `length` states (an Atari game's
    opening, every episode): only `length` distinct states, each stored `games` times."""
    buffer = ReplayBuffer(10_000, 1, (4,), np.float32, frame_stack=1, n_step=1, gamma=0.99, seed=0)
    for _ in range(games):
        for t in range(length):
            obs = np.full((1, 4), t, np.float32)
            end = np.array([t == length - 1])
            buffer.add(obs, [0], [0.0], obs + 1, end, [False])
    return buffer


def test_distinct_states_never_repeats_a_state() -> None:
    buffer = replay_of_repeated_games(games=50)  # 500 stored, 10 distinct
    rng = np.random.default_rng(0)
    batch = distinct_states(buffer, 8, rng)
    rows = {tuple(r.tolist()) for r in batch}
    assert len(batch) == 8 and len(rows) == 8  # sampling with replacement repeats within 8
    # Asked for more than the buffer holds: every distinct state once, and no more.
    every = distinct_states(buffer, 32, rng)
    assert sorted(r[0].item() for r in every) == list(range(10))


def schedule(interval: int = 100, refresh: int = 300) -> tuple[ProbeSchedule, torch.nn.Module]:
    config = resolve(preset="classic", assignments=[
        f"probes.interval={interval}", f"probes.refresh_interval={refresh}",
        "probes.fit_interval=0", "probes.batch_size=16", "probes.ntk_batch=8"])  # fmt: skip
    torch.manual_seed(0)
    net = build_network((4,), 2, config.network, categorical=False)
    return ProbeSchedule(config.probes, seed=1, initial=net), net


def continuous_replay(seed: int = 0) -> ReplayBuffer:
    buffer = ReplayBuffer(10_000, 1, (4,), np.float32, frame_stack=1, n_step=1, gamma=0.99, seed=0)
    rng = np.random.default_rng(seed)
    for _ in range(300):
        obs = rng.normal(size=(1, 4)).astype(np.float32)
        buffer.add(obs, [0], [0.0], obs, [False], [False])
    return buffer


def test_the_first_batch_logs_the_initial_networks_baseline_at_step_0_then_probes() -> None:
    sched, net = schedule()
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.torso.fc1.weight.mul_(3.0)  # the network moved since initialisation
    logs = sched.measurements(net, continuous_replay(), 99, 100)
    assert [(prefix, step) for prefix, step, _ in logs] == [
        ("plasticity/", 0), (BASELINE, 0), ("plasticity/", 100)]  # fmt: skip
    fresh, _ = schedule()
    fresh.initial.load_state_dict(initial)
    by_hand = probes.measure(fresh.initial, sched.batch, ntk_batch=8, ntk_readout=None)
    assert logs[1][2]["param_norm"] == pytest.approx(by_hand["param_norm"])
    assert logs[2][2]["param_norm"] > logs[1][2]["param_norm"]  # the moved network, same batch
    assert logs[2][2]["ntk_rank"] == 8 and "ntk_condition" in logs[2][2]


def test_a_refresh_draws_new_states_and_baselines_them_at_its_step() -> None:
    sched, net = schedule(interval=100, refresh=300)
    replay = continuous_replay()
    sched.measurements(net, replay, 99, 100)
    first = sched.batch.clone()
    assert [p for p, _, _ in sched.measurements(net, replay, 199, 200)] == ["plasticity/"]
    assert torch.equal(sched.batch, first)  # kept between refreshes
    logs = sched.measurements(net, replay, 399, 400)  # 400 - 100 >= 300: redrawn
    assert [(p, s) for p, s, _ in logs] == [(BASELINE, 400), ("plasticity/", 400)]
    assert not torch.equal(sched.batch, first)


def test_a_restored_schedule_measures_the_same_states_and_draws_the_same_next_ones() -> None:
    sched, net = schedule()
    replay = continuous_replay()
    sched.measurements(net, replay, 99, 100)
    state = sched.state_dict()
    restored, _ = schedule()
    with torch.no_grad():
        for p in restored.initial.parameters():
            p.add_(1.0)  # another initial network: the saved one must replace it
    restored.load_state_dict(state)
    assert torch.equal(restored.batch, sched.batch) and restored.drawn_at == 100
    assert restored.figures(net, probes=True, fit=False) == sched.figures(
        net, probes=True, fit=False
    )
    later = [s.measurements(net, replay, 399, 400)[0][2] for s in (sched, restored)]
    assert torch.equal(restored.batch, sched.batch) and later[0] == later[1]


def test_the_update_batch_set_measures_the_updates_states_under_its_own_prefix() -> None:
    """Two ReLU units reading x0 and x1: on the probe batch (every x > 0) neither is dormant; on
    an update's batch with x0 <= 0 unit 0 outputs 0 (ReDo score 0) and unit 1 does not, so
    dormant_fraction is 0 on `plasticity/` and 1/2 on `plasticity_update_batch/`."""
    config = resolve(preset="classic", assignments=[
        "probes.interval=100", "probes.fit_interval=0", "probes.batch_size=8",
        "probes.ntk_batch=0"])  # fmt: skip
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.zero_()
    buffer = ReplayBuffer(100, 1, (2,), np.float32, frame_stack=1, n_step=1, gamma=0.99, seed=0)
    for t in range(20):
        obs = np.array([[1.0 + t, 2.0 + t]], np.float32)
        buffer.add(obs, [0], [0.0], obs, [False], [False])
    update = torch.tensor([[-1.0, 1.0], [-2.0, 3.0], [0.0, 2.0]])
    sched = ProbeSchedule(config.probes, seed=1, initial=net)
    logs = sched.measurements(net, buffer, 99, 100, update_batch=update)
    figures = {prefix: values for prefix, step, values in logs if step == 100}
    assert figures["plasticity/"]["dormant_fraction"] == 0.0
    assert figures[UPDATE_BATCH]["dormant_fraction"] == 0.5
    assert "param_norm" not in figures[UPDATE_BATCH]  # the states' figures only
    assert [p for p, _, _ in sched.measurements(net, buffer, 150, 160, update_batch=update)] == []
