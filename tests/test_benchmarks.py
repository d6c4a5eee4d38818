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
    assert figures.train_sps(config, 100) > 0


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
