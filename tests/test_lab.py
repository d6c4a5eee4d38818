"""The lab: hand-worked pieces (the smooth schedule, the teacher's targets, one learner update
against a float64 reference), the CLI's errors, and the paper's qualitative claims at --quick size,
asserted with margins that held over seeds 1-6 (AMD EPYC, 2 cores)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import configs
from lab.__main__ import main, parse_args
from lab.data import atari_frames
from lab.experiments import Size, run_labels, run_offset
from lab.learner import Learner
from lab.problems import LabelSize, OffsetSize, labels, spread, teacher_targets
from lab.stats import format_cell, t_critical


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return atari_frames(64, side=8, seed=0, env=configs.resolve(preset="lab").env)


def run_lab(tmp_path: Path, capsys, *argv: str) -> tuple[dict, Path, dict[str, str]]:
    """The JSON results, the log directory, and each variant's printed table row."""
    out = tmp_path / "results.json"
    logdir = tmp_path / "runs"
    code = main([*argv, "--quick", "--json", str(out), "--logdir", str(logdir), "--workers", "1"])
    assert code == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    return json.loads(out.read_text()), logdir, rows


def two_seed_cell(a: float, b: float, *, log_scale: bool) -> str:
    """Two seeds' 95% Student-t interval worked by hand: sd = |a − b|/√2, so the half-width is
    12.706 · sd/√2 = 12.706 · |a − b|/2 (on log values for a log scale)."""
    if log_scale:
        la, lb = math.log(a), math.log(b)
        centre, half = (la + lb) / 2, 12.706 * abs(la - lb) / 2
        low, high = math.exp(centre - half), math.exp(centre + half)
        return f"{math.exp(centre):.3g} [{low:.3g}, {high:.3g}]"
    return f"{(a + b) / 2:.3f} ± {12.706 * abs(a - b) / 2:.3f}"


def scalars(run_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def steps(run_dir: Path, tag: str) -> list[int]:
    """The steps a run logged `tag` at; none if it never did."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [e.step for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def test_frames_are_distinct_standardised_and_made_again_from_their_seed(frames):
    flat = frames.flatten(1)
    assert frames.shape == (64, 1, 8, 8)
    assert torch.cdist(flat, flat).add(torch.eye(64) * 1e9).min() > 0  # no two frames alike
    varying = flat.std(0) > 0
    assert torch.allclose(flat.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(flat.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-4)
    again = atari_frames(64, side=8, seed=0, env=configs.resolve(preset="lab").env)
    assert torch.equal(frames, again)


def test_smooth_schedule_changes_each_item_once_spread_evenly():
    slices = spread(torch.arange(10), 4)  # bounds ⌊k·10/4⌋ = 2, 5, 7
    assert [s.tolist() for s in slices] == [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]
    few = spread(torch.arange(3), 7)  # bounds ⌊k·3/7⌋ = 0, 0, 1, 1, 2, 2
    assert [len(s) for s in few] == [0, 0, 1, 0, 1, 0, 1]


def test_smooth_labels_are_scored_on_labels_that_had_time_to_be_learned(tmp_path):
    """64 Gaussian inputs a LayerNorm MLP memorises within a 200-update task: abrupt tasks end at
    accuracy 1 (64/64). Smooth tasks make the same changes; scored on labels that have stood for
    at least `settle` updates they end at 1 too. (Changes spread up to the last update leave the
    last few labels unlearned: 0.92-0.95 on seeds 1-3.)"""
    inputs = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    config = configs.resolve(preset="lab", variant="ln")
    size = LabelSize(classes=10, task_steps=200, tasks=3, settle=40)
    for smooth in (False, True):
        found = labels(config, inputs, size, seed=1, logdir=tmp_path / str(smooth), smooth=smooth)
        assert found == [1.0, 1.0, 1.0], smooth


def test_teacher_targets_are_standardised_and_the_same_for_every_variant(frames):
    inputs = frames.flatten(1)
    plain = configs.resolve(preset="lab")
    targets = teacher_targets(plain, inputs, 5, seed=3)
    assert targets.shape == (64, 5)
    assert torch.allclose(targets.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(targets.std(0, correction=0), torch.ones(5), atol=1e-4)
    stacked = configs.resolve(preset="lab", variant="ln+wd+hl_gauss")
    assert torch.equal(targets, teacher_targets(stacked, inputs, 5, seed=3))


def test_one_update_is_adam_on_the_squared_error_of_every_output(frames):
    """With discount 0 the agent's TD target is the given value, so one update is Adam on
    (1/B·A) Σ (f(x)_a − y_a)² over the batch: checked against the network's own gradient and
    Adam's first step worked out in float64, θ ← θ − lr·g / (|g| + ε) (m̂ = g, v̂ = g²)."""
    config = configs.resolve(preset="lab", assignments=["agent.batch_size=4"])
    inputs = frames.flatten(1)
    learner = Learner(config, inputs, 3, seed=1)
    before = copy.deepcopy(learner.agent.online)
    targets = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    learner.step(targets)

    rows = torch.randint(64, (4,), generator=torch.Generator().manual_seed(1))  # the same draw
    loss = (before(inputs[rows]) - targets[rows]).square().mean()
    params = dict(before.named_parameters())
    grads = torch.autograd.grad(loss, list(params.values()))
    lr, eps = config.agent.lr, config.agent.adam_eps
    after = dict(learner.agent.online.named_parameters())
    for (name, p), g in zip(params.items(), grads, strict=True):
        g = g.double()
        expected = p.detach().double() - lr * g / (g.abs() + eps)
        assert torch.allclose(after[name].detach().double(), expected, atol=1e-6, rtol=0), name
    assert learner.updates == 1


def test_offset_quick_loses_plasticity_with_squared_error_and_keeps_it_with_hl_gauss(
    tmp_path, capsys
):
    """Lyle et al. 2024: large regression targets cost plasticity; a categorical
    loss, whose outputs are logits of bounded size, keeps it. Seeds 1-6: dqn's offset-100 ratio
    31-108, hl_gauss's 1.9-2.5; the bars are far from both."""
    found, logdir, rows = run_lab(
        tmp_path, capsys, "offset", "--variants", "dqn,hl_gauss", "--seeds", "1,2"
    )
    assert found["experiment"] == "offset" and found["higher_is_worse"] is True
    dqn, hl = found["conditions"]["dqn"], found["conditions"]["hl_gauss"]
    assert found["results"] == {"dqn": dqn["offset100"], "hl_gauss": hl["offset100"]}
    for seed in range(2):
        assert dqn["offset100"][seed] > 4 * dqn["offset0"][seed]
        assert dqn["offset100"][seed] > 4 * hl["offset100"][seed]
        assert all(math.isfinite(r[seed]) and r[seed] > 0 for r in (*dqn.values(), *hl.values()))
    assert two_seed_cell(*dqn["offset100"], log_scale=True) in rows["dqn"]

    (run_dir,) = (logdir / "offset").glob("*/dqn__s1")
    pretrained = scalars(run_dir / "offset100")
    assert len(pretrained["plasticity/dormant_fraction"]) == 2  # after pre-training, after fitting
    assert {"plasticity/feature_rank", "plasticity/ntk_condition"} <= pretrained.keys()
    assert len(pretrained["lab/loss"]) == (1000 + 500) // 250
    fresh = scalars(run_dir / "fresh")["lab/loss"]
    assert fresh[-1] < 0.1  # a fresh network fits the targets

    # Beside each ratio, its numerator and denominator in target units: the squared error the
    # runs logged at their last update (float32 in TensorBoard), for every head alike.
    assert dqn["fresh_mse"][0] == pytest.approx(fresh[-1], rel=1e-6)
    assert dqn["offset100_mse"][0] == pytest.approx(pretrained["lab/loss"][-1], rel=1e-6)
    for row in dqn, hl:
        for seed in range(2):
            absolute = row["offset100_mse"][seed] / row["fresh_mse"][seed]
            assert row["offset100"][seed] == pytest.approx(absolute, rel=1e-12)
    assert two_seed_cell(*hl["fresh_mse"], log_scale=True) in rows["hl_gauss"]


def test_labels_quick_abrupt_hurts_more_than_smooth_and_layer_norm_keeps_plasticity(
    tmp_path, capsys
):
    """Lyle et al. 2024: accuracy on re-drawn random labels falls task after task, more
    when all labels change at once than when the same changes come gradually; LayerNorm keeps the
    network trainable."""
    found, logdir, rows = run_lab(
        tmp_path, capsys, "labels", "--variants", "dqn,ln", "--seeds", "1,2"
    )
    dqn, ln = found["conditions"]["dqn"], found["conditions"]["ln"]
    assert found["results"] == {"dqn": dqn["abrupt"], "ln": ln["abrupt"]}
    assert found["higher_is_worse"] is False
    assert two_seed_cell(*ln["smooth"], log_scale=False) in rows["ln"]
    # Seeds 1-6, scored after 100 updates without changes: dqn abrupt 0.27-0.42, smooth 0.52-0.56
    # (a gap of 0.14-0.29); ln abrupt 0.71-0.75, 0.30-0.45 above dqn.
    assert sum(dqn["abrupt"]) < sum(dqn["smooth"])
    for seed in range(2):
        assert ln["abrupt"][seed] > dqn["abrupt"][seed] + 0.15
    accuracy = scalars(next((logdir / "labels").glob("*/dqn__s1")) / "abrupt")["lab/accuracy"]
    assert len(accuracy) == 8 and accuracy[-1] < accuracy[0] - 0.1  # plasticity lost over tasks


def test_reset_head_fires_once_per_change_of_targets_in_both_problems(frames, tmp_path):
    """The lab resets the head on its own clock: before the first update of every label task
    after the first (updates 101 and 201 of three 100-update tasks) and once in the offset
    problem, before the first update of the fit phase (301, after 300 of pre-training); the fresh
    network, trained for 100 updates, is never reset. Logged at the update the reset preceded."""
    config = configs.resolve(preset="lab", variant="reset_head")
    size = Size(
        inputs=64,
        offset=OffsetSize(outputs=2, pretrain_steps=300, fit_steps=100, offsets=(100,)),
        labels=LabelSize(classes=10, task_steps=100, tasks=3, settle=20),
    )
    inputs = frames.flatten(1)
    run_offset(config, inputs, size, 1, tmp_path / "offset")
    run_labels(config, inputs, size, 1, tmp_path / "labels")

    tag = "interventions/reset_head"
    assert steps(tmp_path / "offset" / "offset100", tag) == [301]
    assert steps(tmp_path / "offset" / "fresh", tag) == []
    for mode in ("abrupt", "smooth"):
        assert steps(tmp_path / "labels" / mode, tag) == [101, 201], mode


def test_student_t_critical_values_are_the_tables_ones():
    """Two-sided 95% points of Student's t (any statistics table): 12.706 for 1 degree of
    freedom, 4.303 for 2, 2.262 for 9 (ten seeds), 2.042 for 30."""
    for df, table in ((1, 12.706), (2, 4.303), (9, 2.262), (30, 2.042)):
        assert t_critical(0.95, df) == pytest.approx(table, abs=5e-4), df


def test_a_cell_is_the_mean_and_t_interval_or_the_geometric_mean_and_its_log_interval():
    """[0.8, 0.9, 1.0]: mean 0.9, sd 0.1, half-width 4.303 · 0.1 / √3 = 0.248. [1, 10, 100] on
    a log scale: log10 values 0, 1, 2, mean 1, sd 1, so 10^(1 ± 4.303/√3) = 10^(1 ± 2.484):
    geometric mean 10 in [0.0328, 3050]. One seed has no interval."""
    assert format_cell([0.8, 0.9, 1.0], log_scale=False) == "0.900 ± 0.248"
    assert format_cell([1.0, 10.0, 100.0], log_scale=True) == "10 [0.0328, 3.05e+03]"
    assert format_cell([0.9], log_scale=False) == "0.900"
    assert format_cell([10.0], log_scale=True) == "10"


def test_a_diverged_seed_is_counted_in_its_cell_not_on_its_scale():
    # ln 1 = 0 and ln 100 = 4.605: the geometric mean of [1, 100] is 10
    assert format_cell([1.0, 100.0, math.nan], log_scale=True).endswith(", 1 of 3 diverged")
    assert format_cell([1.0, 100.0, 0.0], log_scale=True).startswith("10 [")
    assert format_cell([0.5, math.inf], log_scale=False) == "0.500, 1 of 2 diverged"
    assert format_cell([math.nan], log_scale=False) == "1 of 1 diverged"


def test_every_variant_of_a_seed_fits_the_same_teacher():
    inputs = torch.randn(16, 4)
    targets = {
        v: teacher_targets(configs.resolve(preset="lab", variant=v), inputs, 3, seed=7)
        for v in ["dqn", "dueling", "rainbow", "ln+wd+hl_gauss"]
    }
    assert all(torch.equal(t, targets["dqn"]) for t in targets.values())


def test_ten_seeds_by_default():
    assert parse_args(["labels"]).seeds == "1-10"


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    assert main(["nonsense"]) == 2
    assert "Unknown experiment 'nonsense'. Known: list, offset, labels, swiss_cheese." in (
        capsys.readouterr().err
    )
    assert main(["offset", "--variants", "dqn,lnn", "--logdir", str(tmp_path)]) == 2
    assert "lnn" in capsys.readouterr().err
    assert main(["labels", "--seeds", "1,x", "--logdir", str(tmp_path)]) == 2
    assert "--seeds '1,x'" in capsys.readouterr().err
    assert main(["labels", "--workers", "0", "--logdir", str(tmp_path)]) == 2
    assert "--workers 0" in capsys.readouterr().err
    small = ["--quick", "--variants", "dqn", "--seeds", "1", "--logdir", str(tmp_path)]
    spellings = ["interventions.reset_head.interval=50", "interventions.reset_head={interval: 5}"]
    for spelling in spellings:
        assert main(["labels", "--set", spelling, *small]) == 2
        assert "once per change of targets" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing started


def test_list_names_every_experiment_and_its_conditions(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert (
        "fresh_mse, offset0, offset0_mse, offset10, offset10_mse, offset100, offset100_mse" in out
    )
    assert "abrupt, smooth" in out
    assert "swiss_cheese" in out
