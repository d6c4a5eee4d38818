"""The benchmark's measuring code on small sizes: figures exist and mean what they say (no
timing is asserted; speed targets are reported by `python -m benchmarks`, never tested)."""

from __future__ import annotations

import configs
from benchmarks import figures
from benchmarks.__main__ import table, verdict


def test_replay_memory_is_measured_as_resident_bytes_per_transition():
    config = configs.resolve()
    # Filled to capacity: a partly written stream would count whole huge pages it only touched.
    result = figures.replay_figures(config, capacity=24_000, transitions=24_000)
    # An 84x84 frame is 7,056 bytes; action, reward and flags add 9; episode padding a little.
    assert 7_056 <= result["replay_bytes_per_transition"] <= 7_200
    assert result["replay_sample_us"] > 0


def test_loop_figures_run_on_the_training_code():
    config = configs.resolve(preset="classic", assignments=["agent.learning_starts=200"])
    assert figures.env_sps_raw(config, 200) > 0
    ups = figures.learner_ups_raw({"mse": config}, updates=10, rounds=2)
    assert set(ups) == {"mse"} and ups["mse"] > 0
    loop = figures.paired_loop(config, steps=40, updates=4, rounds=1)
    assert set(loop) == {"train_sps", "learner_ups", "loop_efficiency"} and loop["train_sps"] > 0
    # One round: the efficiency is that round's steps/s over the learner's bound.
    bound = config.agent.train_interval * loop["learner_ups"]
    assert loop["loop_efficiency"] == loop["train_sps"] / bound


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


def test_host_breakdown_adds_the_host_parts_and_bounds_steps_per_second():
    config = configs.resolve(preset="classic", assignments=["agent.learning_starts=200"])
    parts = figures.host_breakdown(config, repeats=5)
    host = ["act", "env_step", "replay_add", "sample"]
    assert set(parts) == {*host, "update", "host_us", "host_ceiling_sps"}
    assert all(parts[k] > 0 for k in host + ["update"])
    assert parts["host_us"] == sum(parts[k] for k in host)  # the update runs on the device
    assert parts["host_ceiling_sps"] == 1e6 / parts["host_us"]


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


def test_probe_cost_is_timed_per_probe_batch_and_per_ntk_batch():
    cost = figures.probe_cost(configs.resolve(preset="classic"), [16, 32], [4])
    assert set(cost) == {"probe_s/batch=16", "probe_s/batch=32", "probe_s/ntk=4"}
    assert all(v > 0 for v in cost.values())


def test_the_convolution_kernels_that_ran_are_named_per_precision():
    kernels = figures.onednn_kernels()
    # oneDNN names an implementation and its ISA, e.g. brg_conv_fwd:avx512_core_bf16.
    assert set(kernels) == {"fp32", "bf16"} and all(kernels.values())


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
