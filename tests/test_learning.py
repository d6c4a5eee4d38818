"""Real learning: every value head, alone and with ln+wd, balances CartPole within about a minute
of training on 2 CPU cores (the `classic` preset), scored by evaluate.py's protocol."""

from __future__ import annotations

import contextlib
import io

import pytest

import configs
import evaluate
import train

HEADS = ["mse", "c51", "two_hot", "hl_gauss"]


@pytest.mark.parametrize("variant", HEADS + [f"{head}+ln+wd" for head in HEADS])
def test_each_value_head_learns_cartpole(variant, tmp_path):
    config = configs.resolve(
        preset="classic", variant=variant, assignments=["probes.enabled=false"]
    )
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.Trainer(config, tmp_path, None).run() == 0
    scores = evaluate.evaluate(tmp_path, 20, num_envs=4)
    # A uniformly random policy averages about 22 steps; 150 is well past anything luck gives.
    assert scores["mean"] >= 150, scores["returns"]
