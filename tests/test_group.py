"""agents.group: K seeds in one process are K single-seed runs, up to float rounding; and the
per-member penalties and clipping against float64 references."""

from __future__ import annotations

import io
from contextlib import ExitStack, redirect_stderr
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from agents.group import clip_member_grads, l2_penalties, regen_penalties
from training.launch import new_runs

# Equivalence --------------------------------------------------------------------------------


def trajectories(
    argv: list[str], iterations: int
) -> list[list[tuple[np.ndarray, float | None, int]]]:
    """Per seed, after every loop iteration: the seed's observations, its latest TD loss (None
    before its first update) and its update count. Runs the real loop in process:
    Trainer.iteration and Trainer.periodic, as Trainer.run calls them."""
    with ExitStack() as owned, redirect_stderr(io.StringIO()):
        trainer = train.Trainer(new_runs(train.parse_args(argv), owned))
        seen: list[list] = [[] for _ in trainer.runs]
        try:
            for _ in range(iterations):
                trainer.iteration()
                trainer.periodic()
                for record, run in zip(seen, trainer.runs, strict=True):
                    loss = float(run.metrics["td_loss"]) if run.metrics else None
                    record.append((run.obs.copy(), loss, run.agent.updates))
        finally:
            for run in trainer.runs:
                run.close()
    return seen


CASES = {
    # (env, preset, iterations, extra --set): 200+ updates after the warm-up
    "cartpole": ("CartPole-v1", "classic", 500, ["agent.learning_starts=1000"]),
    "minatar": ("MinAtar/Breakout", "minatar", 2250, ["agent.learning_starts=1800"]),
    "breakout": ("Breakout", "smoke", 130, ["agent.learning_starts=50", "agent.train_interval=1"]),
}
VARIANTS = ["dqn", "ln+wd+hl_gauss", "rainbow", "redo"]


def compare(case: str, variant: str, tmp_path: Path) -> list[tuple[bool, int, float]]:
    """Seeds 1 and 2 trained together against each alone: per seed, whether every observation
    matched, how many updates the compared TD losses span, and their largest relative
    difference."""
    env, preset, iterations, sets = CASES[case]
    sets = [*sets, "interventions.redo.interval=50", "probes.enabled=false", "eval.interval=0"]
    argv = ["--env", env, "--preset", preset, "--variant", variant, "--logdir", str(tmp_path)]
    argv += [arg for s in sets for arg in ("--set", s)]
    together = trajectories([*argv, "--seeds", "1-2"], iterations)
    results = []
    for seed, joint in zip((1, 2), together, strict=True):
        alone = trajectories([*argv, "--seed", str(seed)], iterations)[0]
        same_obs = all(np.array_equal(a[0], b[0]) for a, b in zip(joint, alone, strict=True))
        pairs = np.array([(a[1], b[1]) for a, b in zip(joint, alone, strict=True) if b[1]])
        assert all(a[1] is None for a, b in zip(joint, alone, strict=True) if b[1] is None)
        relative = np.abs(pairs[:, 0] - pairs[:, 1]) / np.abs(pairs[:, 1]).clip(min=1e-12)
        results.append((same_obs, joint[-1][2], float(relative.max())))
    return results


@pytest.mark.parametrize("variant", VARIANTS)
def test_two_seeds_together_are_each_seed_alone_on_cartpole(variant, tmp_path):
    """Seed k of a 2-seed CartPole run sees the observations of seed k's own run, step for step
    over 2,000 steps (the first 1,000 warm-up), and its TD losses agree to rtol 1e-4 over 200+
    updates: the interleaved updates share no random stream (ε, replay, noise and interventions
    each draw from the seed's own)."""
    for same_obs, updates, relative in compare("cartpole", variant, tmp_path):
        assert same_obs
        assert updates >= 200
        assert relative < 1e-4


@pytest.mark.parametrize("variant", ["dqn", "rainbow"])
def test_two_seeds_together_are_each_seed_alone_on_minatar(variant, tmp_path):
    for same_obs, updates, relative in compare("minatar", variant, tmp_path):
        assert same_obs
        assert updates >= 200
        assert relative < 1e-4


def test_two_seeds_together_are_each_seed_alone_on_breakout(tmp_path):
    """The Nature CNN (one functional call per seed over the stacks) on real Breakout frames."""
    for same_obs, updates, relative in compare("breakout", "ln+wd+hl_gauss", tmp_path):
        assert same_obs
        assert updates >= 200
        assert relative < 1e-4


# Per-member math ----------------------------------------------------------------------------


def test_per_member_penalties_and_clipping_match_float64_references():
    """L2 Σ‖θ‖², regen Σ‖θ − θ⁰‖² and torch's clip_grad_norm_ rule, each per member of a [K, ...]
    stack, against the same sums in float64 member by member."""
    torch.manual_seed(0)
    params = [torch.randn(3, 4, 5), torch.randn(3, 4)]
    anchors = [torch.randn(3, 4, 5), torch.randn(3, 4)]
    for k in range(3):
        l2 = sum(p[k].double().square().sum() for p in params)
        pairs = zip(params, anchors, strict=True)
        regen = sum((p[k].double() - a[k].double()).square().sum() for p, a in pairs)
        assert torch.isclose(l2_penalties(params)[k].double(), l2, rtol=1e-6)
        assert torch.isclose(regen_penalties(params, anchors)[k].double(), regen, rtol=1e-6)
    grads = [torch.randn(3, 4, 5) * torch.tensor([0.01, 1.0, 10.0]).view(3, 1, 1), torch.ones(3, 4)]
    reference = [g.double().clone() for g in grads]
    norms = clip_member_grads(grads, max_norm=2.0)
    for k in range(3):
        norm = sum(g[k].square().sum() for g in reference).sqrt()
        assert torch.isclose(norms[k].double(), norm, rtol=1e-6)
        scale = min(1.0, 2.0 / (float(norm) + 1e-6))
        for g, r in zip(grads, reference, strict=True):
            assert torch.allclose(g[k].double(), r[k] * scale, rtol=1e-6)
