"""The benchmark's measuring code on small sizes: figures exist and mean what they say (no
timing is asserted; speed targets are reported by `python -m benchmarks`, never tested)."""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import configs
import probes.schedule
from agents import build_agent, resolve_device
from agents.group import SeedGroup
from benchmarks import figures
from benchmarks.__main__ import table, verdict
from envs import make_env
from replay import ReplayBuffer, make_replay


class WorkClock:
    """A clock that reads the known seconds charged to the calls made so far: a figure timed on it
    comes out of how many of which calls the timed code made, the same on any machine."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds

    def charge(self, monkeypatch, owner, name: str, seconds) -> None:
        """Each call of `owner.name`, which still runs, adds `seconds` (or `seconds(*args,
        **kwargs)` where it is a function of the call's arguments)."""
        real = getattr(owner, name)

        def charged(*args, **kwargs):
            self.seconds += seconds(*args, **kwargs) if callable(seconds) else seconds
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, charged)


def counting(monkeypatch, owner, name: str) -> list:
    """Patches `owner.name` to record each call (and still run it); returns the record."""
    calls, real = [], getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_replay_memory_is_measured_as_resident_bytes_per_transition():
    config = configs.resolve()
    # Filled to capacity: a partly written stream would count whole huge pages it only touched.
    result = figures.replay_figures(config, capacity=24_000, transitions=24_000)
    # An 84x84 frame is 7,056 bytes; action, reward and flags add 9; episode padding a little.
    assert 7_056 <= result["replay_bytes_per_transition"] <= 7_200
    assert result["replay_sample_us"] > 0


def test_loop_figures_run_on_the_training_code(monkeypatch):
    # MountainCar ends no episode before step 200, so every loop iteration is 4 agent steps.
    sets = ["env.id=MountainCar-v0", "agent.learning_starts=200"]
    config = configs.resolve(preset="classic", assignments=sets)
    assert (config.env.num_envs, config.agent.train_interval) == (4, 2)
    clock = WorkClock()
    clock.charge(monkeypatch, SeedGroup, "act", 0.001)
    clock.charge(monkeypatch, gym.vector.SyncVectorEnv, "step", 0.003)
    clock.charge(monkeypatch, SeedGroup, "update", 0.005)
    # A 3 ms vector step serves 4 envs (no acting in the raw figure).
    assert figures.env_sps_raw(config, 200, clock=clock) == pytest.approx(4 / 0.003)
    ups = figures.learner_ups_raw({"mse": config}, updates=10, rounds=2, clock=clock)
    assert ups == {"mse": pytest.approx(200.0)}  # 5 ms an update
    loop = figures.paired_loop(config, steps=40, updates=4, rounds=2, clock=clock)
    assert set(loop) == {"train_sps", "learner_ups", "loop_efficiency"}
    # Each iteration of the training loop acts once (1 ms), steps the 4 envs once (3 ms) and makes
    # the 4 / train_interval = 2 updates owed (10 ms): 4 steps in 14 ms. The learner's bound is
    # train_interval x 200 updates/s = 400 steps/s.
    assert loop["train_sps"] == pytest.approx(4 / 0.014)
    assert loop["learner_ups"] == pytest.approx(200.0)
    assert loop["loop_efficiency"] == pytest.approx((4 / 0.014) / 400)


def test_the_table_marks_targets_met_and_missed():
    assert verdict("loop_efficiency", 0.95).endswith("ok")
    assert verdict("replay_sample_us", 350.0).endswith("MISSED")
    results = {
        "conditions": {
            "device": "cpu",
            "cpu": "x86_64",
            "torch": "2",
            "torch_threads": 2,
            "env": "Pong",
            "num_envs": 1,
            "batch_size": 32,
            "train_interval": 4,
            "replay_capacity": 1000,
        },
        "loop_efficiency": 0.95,
        "loop_bound": "learner",
        "replay_filled": 10,
    }
    assert "loop_efficiency" in table(results) and ">= 0.9  ok" in table(results)


def test_host_breakdown_adds_the_host_parts_and_bounds_steps_per_second(monkeypatch):
    # On the real clock a part is read in microseconds: a 2 ms call reads 2,000 µs or a bit more.
    assert 2_000 <= figures.timed(lambda: time.sleep(0.002), 5) < 20_000
    config = configs.resolve(preset="classic", assignments=["agent.learning_starts=200"])
    assert (config.env.num_envs, config.agent.train_interval) == (4, 2)
    clock = WorkClock()  # a cost per call, each twice the last: a part timing two calls shows it
    clock.charge(monkeypatch, SeedGroup, "act", 0.001)
    clock.charge(monkeypatch, gym.vector.SyncVectorEnv, "step", 0.002)
    clock.charge(monkeypatch, ReplayBuffer, "add", 0.004)
    clock.charge(monkeypatch, ReplayBuffer, "sample", 0.008)
    clock.charge(monkeypatch, SeedGroup, "update", 0.016)
    parts = figures.host_breakdown(config, repeats=5, clock=clock)
    # µs per agent step: acting, the env step and the add serve 4 envs a call; a sample and an
    # update come once every train_interval = 2 agent steps.
    expected = {"act": 250, "env_step": 500, "replay_add": 1000, "sample": 4000, "update": 8000}
    expected |= {"host_us": 5750, "host_ceiling_sps": 1e6 / 5750}  # all but the update
    assert parts == pytest.approx(expected)


def test_loop_ceiling_counts_the_host_work_that_waits_for_the_update():
    parts = {"act": 900.0, "env_step": 500.0, "replay_add": 50.0, "sample": 50.0, "update": 5e3}
    # One env, a 20 ms update every 4 steps: 5,000 µs of learner per step; acting, add and sample
    # wait (1,000 µs) and the env step runs alone in 3 iterations of 4 (375 µs).
    assert figures.loop_ceiling(parts, 1, 4) == 5_000 / (5_000 + 1_000 + 375)
    # Eight envs update in every iteration, so the env step always runs beside the update.
    assert figures.loop_ceiling(parts, 8, 4) == 5_000 / 6_000


def test_replay_memory_by_capacity_is_one_frame_per_slot():
    (gb,) = figures.memory_by_capacity(configs.resolve(), [36_000]).values()
    # 7,065 bytes per slot (an 84x84 frame and 9 bytes of action, reward and flags): 0.254 GB.
    assert 0.24 <= gb <= 0.27


def test_probe_cost_is_timed_per_probe_batch_and_per_ntk_batch(monkeypatch):
    config = configs.resolve(preset="classic")
    assert (config.probes.batch_size, config.probes.ntk_batch) == (128, 32)
    clock = WorkClock()  # a measurement costs 1 ms a state and 0.1 ms an NTK entry

    def cost(_model, states, *, ntk_batch, **_):
        return 1e-3 * len(states) + 1e-4 * ntk_batch**2

    clock.charge(monkeypatch, figures, "measure", cost)
    result = figures.probe_cost(config, [16, 32], [4], clock=clock)
    # One measurement each (not its warm-up): 16 or 32 states with the 32-state NTK (102.4 ms),
    # and 128 states with a 4-state NTK (1.6 ms).
    expected = {"probe_s/batch=16": 0.1184, "probe_s/batch=32": 0.1344, "probe_s/ntk=4": 0.1296}
    assert result == pytest.approx(expected)


def test_probe_overhead_is_the_schedules_probe_time_over_training_time(monkeypatch):
    sets = [
        "probes.interval=100",
        "probes.fit_interval=500",
        "probes.refresh_interval=250",
        "probes.batch_size=8",
        "probes.ntk_batch=4",
        "probes.fit_steps=2",
    ]
    config = configs.resolve(preset="classic", assignments=sets)
    # How often the training loop's own schedule measures and fits, counted over 1,500 steps past
    # its first batch (drawn at the first call): the network at each of 15 probe steps and 3 fit
    # steps, and the initial network on each batch, redrawn at the first probe step 250 or more
    # steps after the last draw: at 300, 600, ..., 1,800, so 5 in the window.
    measured = counting(monkeypatch, probes.schedule, "measure")
    fitted = counting(monkeypatch, probes.schedule, "probe_fit_loss")
    env, spec, obs = make_env(config.env.id, 4, 0, config.env)
    replay = make_replay(
        config.replay,
        4,
        spec.obs_shape,
        spec.obs_dtype,
        frame_stack=1,
        n_step=1,
        gamma=0.99,
        seed=0,
    )
    for _ in range(8):
        actions = np.zeros(4, np.int64)
        next_obs, rewards, terminated, truncated, _ = env.step(actions)
        replay.add(obs, actions, rewards, next_obs, terminated, truncated)
        obs = next_obs
    env.close()
    online = build_agent(config, spec, resolve_device("cpu")).online
    schedule = probes.schedule.ProbeSchedule(config.probes, seed=0, initial=online)
    for now in range(4, 1_801, 4):
        if now - 4 == 300:
            del measured[:], fitted[:]
        schedule.measurements(online, replay, now - 4, now)
    assert (len(measured), len(fitted)) == (15 + 5, 3 + 5)
    # With 50 ms a measurement, 400 ms a fit and training at 1,000 steps/s, those 1,500 steps
    # spend 20 x 0.05 + 8 x 0.4 = 4.2 s in probes and 1.5 s training.
    clock = WorkClock()
    clock.charge(monkeypatch, figures, "measure", 0.05)
    clock.charge(monkeypatch, figures, "probe_fit_loss", 0.4)
    assert figures.probe_overhead(config, 1_000.0, clock=clock) == pytest.approx(4.2 / 5.7)


def test_the_convolution_kernels_that_ran_are_named_per_precision():
    kernels = figures.onednn_kernels()
    # oneDNN names an implementation and its ISA, e.g. brg_conv_fwd:avx512_core_bf16; torch gives
    # oneDNN bf16 convolutions from AVX-512 on (native or emulated), below it runs its own.
    onednn_takes_bf16 = "avx512bw" in Path("/proc/cpuinfo").read_text().split()
    assert set(kernels) == {"fp32", "bf16"} and ":" in kernels["fp32"]
    assert (kernels["bf16"] != figures.ATEN_BF16) == onednn_takes_bf16
    assert kernels["bf16"] == figures.ATEN_BF16 or ":" in kernels["bf16"]


def test_both_programs_are_timed_over_the_same_window_of_steps(tmp_path):
    # CleanRL logs a loss every 100 steps from 2,100, the suite every 1,000 from 3,000; the wall
    # clock runs at 10 steps/s before step 3,000 and 40 steps/s after: both must read 40.
    from torch.utils.tensorboard import SummaryWriter

    from benchmarks.versus_cleanrl import loss_rate

    for name, first, every in [("cleanrl", 2_100, 100), ("suite", 3_000, 1_000)]:
        writer = SummaryWriter(str(tmp_path / name))
        for step in range(first, 12_001, every):
            wall = step / 10 if step <= 3_000 else 300 + (step - 3_000) / 40
            writer.add_scalar("losses/td_loss", 1.0, step, walltime=1e9 + wall)
        writer.close()
        assert abs(loss_rate(tmp_path / name) - 40.0) < 1e-3, name
