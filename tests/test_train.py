"""train.py end to end on real games: TensorBoard events read back, resume, signals, bad input."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import only_run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import configs
import train
from agents import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def smoke(logdir: Path, total: int, *extra: str, env: str = "Pong") -> list[str]:
    """train.py arguments of a smoke run (probes off unless `extra` turns them on)."""
    return ["--env", env, "--preset", "smoke", "--logdir", str(logdir), "--total-steps", str(total),
            "--set", "probes.enabled=false", *extra]  # fmt: skip


def scalars(run_dir: Path) -> dict[str, list]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def test_a_smoke_run_writes_returns_losses_and_probes(pong_run):
    tags = scalars(pong_run)
    for tag in [
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/sps",
        "charts/epsilon",
        "losses/td_loss",
        "losses/q_values",
    ]:
        assert tag in tags, tag
    # Pong scores lie in [-21, 21]; a 1,200-frame cap ends each game after 300 agent steps.
    returns = [e.value for e in tags["charts/episodic_return"]]
    assert returns and all(-21 <= r <= 21 and r == int(r) for r in returns)
    assert {e.value for e in tags["charts/episodic_length"]} == {300.0}
    # The x-axis is environment steps: logs every 100 steps up to 800.
    assert [e.step for e in tags["charts/epsilon"]] == list(range(100, 900, 100))
    for key in [
        "dormant_fraction",
        "param_norm",
        "feature_rank",
        "ntk_condition",
        "dormant_fraction/torso.relu_conv1",
        "probe_fit_loss",
        "grad_norm",
        "target_magnitude",
    ]:
        assert f"plasticity/{key}" in tags, key
    # The second set, on the latest update's states, at every probe after step 0.
    fixed = [e.step for e in tags["plasticity/dormant_fraction"]]
    current = tags["plasticity_update_batch/dormant_fraction"]
    assert [e.step for e in current] == [s for s in fixed if s > 0]
    assert all(0 <= e.value <= 1 for e in current)


def test_probes_are_measured_at_step_0_on_the_network_as_initialised(pong_run, tmp_path):
    tags = scalars(pong_run)
    norms = tags["plasticity/param_norm"]
    assert norms[0].step == 0 and tags["plasticity/dormant_fraction"][0].step == 0
    assert tags["plasticity/probe_fit_loss"][0].step == 0
    # The run's config builds the same initial network again: its norm, summed in float64.
    config = configs.from_dict(yaml.safe_load((pong_run / "config.yaml").read_text()))
    trainer = train.Trainer(config, tmp_path, None)
    trainer.env.close()
    trainer.logger.close()
    params = trainer.agent.online.parameters()
    initial = math.sqrt(sum(p.double().square().sum().item() for p in params))
    # float32 rounding against 150 Adam steps at lr 6.25e-5, which moved the norm by ~1e-4.
    assert abs(norms[0].value - initial) < abs(norms[-1].value - initial) / 10


def distinct_rows(batch) -> int:
    return len({row.numpy().tobytes() for row in batch})


def test_the_probe_batch_is_distinct_saved_and_measured_again_on_resume(pong_run, tmp_path):
    # Smoke preset: learning starts at 200, probes every 400 on 32 states, the NTK on 8.
    checkpoint = load_checkpoint(list_checkpoints(pong_run)[-2])  # step 400 (and 800 after it)
    saved = checkpoint["probes"]
    assert checkpoint["step"] == 400 and saved["drawn_at"] == 200  # drawn once learning started
    assert saved["batch"].shape == (32, 4, 84, 84) and distinct_rows(saved["batch"]) == 32
    tags = scalars(pong_run)
    assert [e.value for e in tags["plasticity/ntk_rank"]] == [8.0, 8.0, 8.0]  # steps 0, 400, 800
    assert all(1.0 <= e.value < 1e8 for e in tags["plasticity/ntk_condition"])  # cap is 4.5e15
    baseline = tags["plasticity_baseline/dormant_fraction"]
    assert [(e.step, e.value) for e in baseline] == [
        (0, tags["plasticity/dormant_fraction"][0].value)
    ]
    # A resume restores the batch and the initial network: measuring the checkpoint's network
    # on it gives what the run logged at that step.
    config = configs.from_dict(checkpoint["config"])
    trainer = train.Trainer(config, tmp_path, checkpoint)
    trainer.env.close()
    trainer.logger.close()
    assert torch.equal(trainer.probes.batch.cpu(), saved["batch"])
    again = trainer.probes.figures(trainer.agent.online, probes=True, fit=False)
    logged = {
        k.removeprefix("plasticity/"): v[1].value
        for k, v in tags.items()
        if k.startswith("plasticity/")
    }
    for key in ["dormant_fraction", "param_norm", "feature_rank", "effective_rank", "ntk_rank",
                "ntk_condition", "dormant_fraction/torso.relu_conv1"]:  # fmt: skip
        assert again[key] == pytest.approx(logged[key], rel=1e-5), key


def test_a_classic_runs_probe_batch_is_distinct_and_its_ntk_has_full_rank(tmp_path):
    args = ["--env", "CartPole-v1", "--preset", "classic", "--logdir", str(tmp_path),
            "--total-steps", "2000", "--set", "probes.interval=1000",
            "--set", "probes.fit_interval=0", "--set", "eval.interval=0"]  # fmt: skip
    assert train.main(args) == 0
    run_dir = only_run(tmp_path)
    batch = load_checkpoint(list_checkpoints(run_dir)[-1])["probes"]["batch"]
    assert batch.shape == (128, 4) and distinct_rows(batch) == 128
    tags = scalars(run_dir)
    assert [e.step // 1000 for e in tags["plasticity/ntk_rank"]] == [0, 1, 2]
    assert all(e.value == 32 for e in tags["plasticity/ntk_rank"])
    assert all(1.0 <= e.value < 1e12 for e in tags["plasticity/ntk_condition"])


def test_evaluate_best_needs_a_run_with_evaluation_phases(pong_run):
    result = run_cli("evaluate.py", str(pong_run), "--best", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds no best.pt" in result.stderr and "eval.interval" in result.stderr


def test_the_run_directory_holds_config_and_checkpoints(pong_run):
    assert pong_run.name.startswith("pong__dqn__s3__")
    config = yaml.safe_load((pong_run / "config.yaml").read_text())
    assert config["env"]["max_episode_frames"] == 1200 and config["train"]["seed"] == 3
    assert [p.name for p in list_checkpoints(pong_run)] == [
        "ckpt_000000000400.pt",
        "ckpt_000000000800.pt",
    ]


def test_resume_continues_the_step_counter_and_optimizer(pong_run, tmp_path):
    before = load_checkpoint(list_checkpoints(pong_run)[-1])
    assert train.main(["--resume", str(pong_run), "--total-steps", "1000"]) == 0
    after = load_checkpoint(list_checkpoints(pong_run)[-1])
    assert (before["step"], after["step"]) == (800, 1000)
    # (1000 - 800) steps / 4 per update: 50 more Adam steps on top of the saved state.
    assert after["agent"]["updates"] == before["agent"]["updates"] + 50
    adam_step = lambda s: s["agent"]["optimizer"]["state"][0]["step"].item()  # noqa: E731
    assert adam_step(after) == adam_step(before) + 50
    epsilon = scalars(pong_run)["charts/epsilon"]
    assert [e.step for e in epsilon if e.step > 800] == [900, 1000]
    # The ε-greedy stream goes on from the saved generator, not from a new seed: 100 iterations
    # of 2 envs each draw 2 uniforms (explore?) and 2 of Pong's 6 actions.
    stream = np.random.default_rng()
    stream.bit_generator.state = before["agent"]["rng"]
    for _ in range(100):
        stream.random(2), stream.integers(6, size=2)
    assert stream.bit_generator.state == after["agent"]["rng"]


def test_resume_without_replay_contents_warms_up_again_and_says_so(tmp_path, capsys):
    assert train.main(smoke(tmp_path, 400)) == 0
    run_dir = only_run(tmp_path)
    before = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert "replay" not in before  # replay contents are off by default
    assert "empty replay buffer" not in capsys.readouterr().err
    assert train.main(["--resume", str(run_dir), "--total-steps", "800"]) == 0
    after = load_checkpoint(list_checkpoints(run_dir)[-1])
    # The empty buffer collects learning_starts = 200 steps again: updates resume at step 600 and
    # the 2 envs owe one every 2 iterations, at steps 602, 606, ..., 798: 50 updates.
    assert after["agent"]["updates"] - before["agent"]["updates"] == 50
    step = before["step"]
    # The smoke preset decays ε from 1 to 0.01 over 500 steps after 200: at step 401, 0.60796.
    epsilon = 0.01 + (1 - (step - 200) / 500) * 0.99
    err = capsys.readouterr().err
    assert f"Resuming at step {step:,} with an empty replay buffer" in err
    assert f"epsilon {epsilon:g}, and updates resume at step {step + 200:,}" in err
    marks = scalars(run_dir)["charts/replay_refilled"]
    assert [(m.step, m.value) for m in marks] == [(step, step)]
    from analysis.runs import read_run  # the report marks the run

    assert read_run(run_dir).refilled_at == (step,)


def test_rerunning_a_named_run_resumes_it_and_refuses_other_flags(tmp_path):
    def job(total: int, *extra: str) -> list[str]:
        return smoke(tmp_path, total, "--run-name", "job7", *extra)

    assert train.main(job(400)) == 0
    assert train.main(job(800)) == 0  # the same job requeued with a larger budget resumes
    assert [p.name for p in list_checkpoints(tmp_path / "job7")][-1] == "ckpt_000000000800.pt"
    # config.yaml holds the budget of the latest launch: the report reads it as the run's.
    config = yaml.safe_load((tmp_path / "job7" / "config.yaml").read_text())
    assert config["train"]["total_steps"] == 800
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert train.main(job(1200, "--variant", "ln")) == 2
        assert train.main(job(600)) == 2  # a budget below the step reached (800) is refused
    assert "differs from these flags in variant, network.layer_norm" in err.getvalue()
    assert "--total-steps 600 is below the step" in err.getvalue() and "(800)" in err.getvalue()
    assert config == yaml.safe_load((tmp_path / "job7" / "config.yaml").read_text())
    # A refused launch let go of the run's lock: the same process resumes it at once.
    with contextlib.redirect_stderr(err):
        assert train.main(job(1200)) == 0
    assert "waiting for" not in err.getvalue()


def test_evaluate_scores_the_checkpoint(pong_run, tmp_path):
    out = tmp_path / "scores.json"
    result = run_cli("evaluate.py", str(pong_run), "--episodes", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert len(scores["returns"]) == 2 and scores["epsilon"] == 0.001
    assert scores["mean"] == sum(scores["returns"]) / 2
    # Pong: random -20.7, human 14.6.
    assert scores["human_normalized"] == pytest.approx((scores["mean"] + 20.7) / 35.3)
    assert "human-normalised mean" in result.stdout


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "train.py", *smoke(tmp_path, 1_000_000)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("*/ckpt_*.pt")):
        time.sleep(0.5)  # the smoke preset checkpoints every 400 steps
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "SIGTERM: stopped at step" in err
    last = load_checkpoint(list_checkpoints(only_run(tmp_path))[-1])
    assert last["step"] > 400 and f"--resume {only_run(tmp_path)}" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "Pongg"], r"Unknown environment 'Pongg'. Closest valid ids: Pong"),
        (["--set", "agent.lrr=1e-4"], r"Unknown config key 'agent.lrr'.*Did you mean 'agent.lr'"),
        (["--set", "agent.lr=0"], r"agent.lr = 0.0 is impossible"),
        (["--set", "agent.batch_size=64", "--set", "replay.capacity=32"], r"no larger than"),
        (["--total-steps", "0"], r"train.total_steps = 0 is impossible"),
        (["--variant", "c51+hl_gauss"], r"'c51' and 'hl_gauss' clash"),
        (["--resume", "/nonexistent/run"], r"/nonexistent/run does not exist"),
        (["--seed", "-3"], r"train.seed = -3 is impossible"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(args, message, tmp_path):
    result = run_cli("train.py", "--logdir", str(tmp_path), *args, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert not any(tmp_path.iterdir())  # nothing started


@pytest.mark.parametrize(
    ("native", "amp", "warned"),
    [(False, "true", True), (True, "true", False), (None, "true", False), (False, "false", False)],
)
def test_bf16_autocast_on_a_cpu_that_would_emulate_it_is_warned_of(
    native, amp, warned, monkeypatch, capsys
):
    monkeypatch.setattr(train, "native_bf16", lambda: native)  # this CPU's own flags aside
    train.warn_emulated_bf16(configs.resolve(assignments=[f"train.amp={amp}", "train.device=cpu"]))
    assert ("warning: train.amp=true on a CPU without native bf16" in capsys.readouterr().err) is (
        warned
    )


@pytest.mark.parametrize(
    ("preset", "variant", "warned"),
    [("minatar", "hl_gauss", True), (None, "c51+no_clip", True), (None, "c51", False),
     ("minatar", "dqn", False)],
)  # fmt: skip
def test_a_categorical_head_on_raw_rewards_is_warned_of_its_support(
    preset, variant, warned, capsys
):
    train.warn_unclipped_support(configs.resolve(preset=preset, variant=variant))
    err = capsys.readouterr().err
    assert ("on a support of [-10, 10]: TD targets outside it are clipped" in err) is warned


def test_a_corrupt_checkpoint_is_named_on_resume(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "ckpt_000000000100.pt").write_bytes(os.urandom(64))
    result = run_cli("train.py", "--resume", str(run_dir), timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "ckpt_000000000100.pt could not be read" in result.stderr


def test_list_variants_describes_every_option():
    result = run_cli("train.py", "--list-variants", timeout=60)
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {
        "dqn",
        "ln",
        "l2",
        "wd",
        "c51",
        "two_hot",
        "hl_gauss",
        "double",
        "nstepN",
        "no_clip",
        "mse",
        "huber",
    } <= set(names)


def test_the_resolved_options_are_recorded_in_tensorboard(pong_run):
    events = EventAccumulator(str(pong_run), size_guidance={"tensors": 0})
    events.Reload()
    (text,) = events.Tensors("config/text_summary")
    recorded = yaml.safe_load(textwrap.dedent(text.tensor_proto.string_val[0].decode()))
    assert recorded["variant"] == "dqn" and recorded["env"]["max_episode_frames"] == 1200
    # The HParams dashboard's session record, so runs can be filtered by option there.
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


OPTIONS = ["double", "nstep3", "no_clip", "hyperbolic", "mse", "huber", "per", "dueling", "noisy",
           "rainbow", "rainbow+ln+wd+hl_gauss"]  # fmt: skip


@pytest.mark.parametrize("variant", sorted(set(configs.grid_variants("plasticity") + OPTIONS)))
def test_every_option_and_the_paper_grid_train_on_a_real_game(variant, tmp_path):
    extra = ["--variant", variant, "--set", "agent.learning_starts=100", "--set",
             "probes.enabled=true", "--set", "probes.interval=300"]  # fmt: skip
    argv = smoke(tmp_path, 300, *extra, env="Breakout")
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.main(argv) == 0
    run_dir = only_run(tmp_path)
    assert f"__{variant}__" in run_dir.name
    tags = scalars(run_dir)
    losses = [e.value for e in tags["losses/td_loss"]]
    assert losses and all(math.isfinite(v) for v in losses)
    assert "plasticity/dormant_fraction" in tags and "plasticity/target_magnitude" in tags
    if configs.resolve(variant=variant).agent.loss in ("c51", "two_hot", "hl_gauss"):
        assert "plasticity/entropy" in tags


def test_intervention_events_are_logged_once_across_a_resume(tmp_path):
    """An intervention due in the first iteration after a checkpoint is logged once, at the step
    after that iteration, even when a resume from that checkpoint does it again."""
    # 2 envs, learning_starts 200, train_interval 2: update u runs in the iteration that starts
    # at step 200 + 2 (u - 1), so ReDo's update 101 starts at the checkpoint's step, 400.
    redo = ("--set", "interventions.redo.enabled=true", "--set", "interventions.redo.interval=101",
            "--set", "replay.save_contents=true", "--set", "agent.train_interval=2")  # fmt: skip
    assert train.main(smoke(tmp_path, 500, *redo)) == 0
    run_dir = only_run(tmp_path)
    list_checkpoints(run_dir)[-1].unlink()  # as if killed after the checkpoint at 400
    assert train.main(["--resume", str(run_dir), "--total-steps", "500"]) == 0
    assert load_checkpoint(list_checkpoints(run_dir)[-1])["agent"]["updates"] == 150
    assert [e.step for e in scalars(run_dir)["interventions/redo"]] == [402]


def test_one_process_writes_a_run_directory_at_a_time(tmp_path):
    """A second launch of a run waits for the first to end, then resumes where it stopped."""
    argv = [sys.executable, "train.py", *smoke(tmp_path, 1_000_000, "--run-name", "job")]
    logs = [tmp_path / "first.err", tmp_path / "second.err"]
    first = subprocess.Popen(argv, cwd=ROOT, stderr=logs[0].open("w"), stdout=subprocess.DEVNULL)
    run_dir, second = tmp_path / "job", None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list_checkpoints(run_dir):
            time.sleep(0.2)
        second = subprocess.Popen(argv, cwd=ROOT, stderr=logs[1].open("w"),
                                  stdout=subprocess.DEVNULL)  # fmt: skip
        while time.time() < deadline and "waiting for" not in logs[1].read_text():
            time.sleep(0.2)
        assert f"waiting for pid {first.pid} on " in logs[1].read_text()
        assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # the second wrote nothing
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 128 + signal.SIGTERM
        stopped = load_checkpoint(list_checkpoints(run_dir)[-1])["step"]
        while time.time() < deadline + 60 and "resuming" not in logs[1].read_text():
            time.sleep(0.2)
        assert f"resuming {run_dir} at step {stopped:,}" in logs[1].read_text()
        newest = lambda: list_checkpoints(run_dir)[-1].name  # noqa: E731
        while time.time() < deadline + 120 and newest() <= f"ckpt_{stopped:012d}.pt":
            time.sleep(0.2)  # the second's own checkpoint: its signal handlers are in place
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    assert second.returncode == 128 + signal.SIGTERM, logs[1].read_text()
    assert "Traceback" not in logs[0].read_text() + logs[1].read_text()
