"""Real learning: every value head, alone and with ln+wd, balances CartPole within one to five
minutes of training on one CPU core (the `classic` preset, 60,000 steps; five on CI's slowest CPU,
a Zen 1 EPYC), scored by evaluate.py's protocol. CI runs the flagship `hl_gauss+ln+wd` (MinAtar's
test covers plain `dqn`); the other seven are marked slow (`pytest -m slow`) to keep CI's
20-minute budget on every CPU it draws.

What is asserted is what a user gets: the best network the evaluation phases kept (best.pt), not
the final one, whose greedy policy on CartPole swings from one update to the next, so that a
test on it passes or fails with the CPU's float rounding. `python -m benchmarks.learning` gives
both figures over five seeds (README)."""

from __future__ import annotations

import contextlib
import io

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import configs
import evaluate
import train
from agents import load_checkpoint
from agents.evaluation import best_path

HEADS = ["mse", "c51", "two_hot", "hl_gauss"]
IN_CI = "hl_gauss+ln+wd"
VARIANTS = [
    pytest.param(v, marks=[] if v == IN_CI else pytest.mark.slow)
    for v in HEADS + [f"{head}+ln+wd" for head in HEADS]
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_value_head_learns_cartpole(variant, tmp_path):
    config = configs.resolve(
        preset="classic", variant=variant, assignments=["probes.enabled=false"]
    )
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.Trainer([(config, tmp_path, None)]).run() == 0
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    evals = events.Scalars("eval/episodic_return")
    # One evaluation phase per 5,000 of the 60,000 steps, at the first step past each multiple
    # (the counter moves by the valid rows of 4 envs: 4, or fewer on an autoreset row).
    assert [e.step // 5000 for e in evals] == list(range(1, 13))
    assert all(e.step % 5000 < 4 for e in evals)
    best = load_checkpoint(best_path(tmp_path))
    top = max(evals, key=lambda e: e.value)  # the first of equal maxima: later ones don't replace
    assert best["step"] == next(e.step for e in evals if e.value == top.value)
    assert best["eval_return"] == pytest.approx(top.value, rel=1e-6)  # TensorBoard keeps float32
    # Scored afresh on 20 other games. A uniformly random policy averages about 22 steps; 150 is
    # well past anything luck gives.
    scores = evaluate.evaluate(best_path(tmp_path), 20, num_envs=4)
    assert scores["mean"] >= 150, scores["returns"]
