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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import only_run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor, nn

import configs
import train
from agents import DQNAgent, build_agent, build_interventions, list_checkpoints, load_checkpoint
from envs import EnvSpec
from networks import NoisyLinear
from networks.init import reset_all
from replay import Batch, PrioritizedReplayBuffer, ReplayBuffer
from training import SeedRun
from training.launch import check_memory

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
    run = SeedRun(config, tmp_path, None)
    run.close()
    params = run.agent.online.parameters()
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
    run = SeedRun(config, tmp_path, checkpoint)
    run.close()
    assert torch.equal(run.probes.batch.cpu(), saved["batch"])
    again = run.probes.figures(run.agent.online, probes=True, fit=False)
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
    assert "Traceback" not in err and f"SIGTERM: stopped {only_run(tmp_path)} at step" in err
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
        (["--seeds", "1-3", "--seed", "2"], r"--seeds and --seed were both given"),
        (["--seeds", "4-2"], r"--seeds '4-2': '4-2' is an empty range"),
        (["--seeds", "1,,2"], r"--seeds '1,,2' has an empty item"),
        (["--seeds", "1,x"], r"'x' is not a seed"),
        (["--seeds", "1,2,1"], r"names a seed twice"),
        (["--seeds", "1-2", "--run-name", "job"], r"put \{seed\} in it"),
        (["--seeds", "1-2", "--variant", "inject"], r"interventions.inject cannot be used with"),
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


# What each option exists to change, read back from what a run wrote: its newest checkpoint (with
# the replay contents) and its events. The expected numbers come from the option files
# (configs/variants/*.yaml) and the papers they cite, not from configs.resolve, so that an option
# neutralised in its file fails here. test_minatar.py checks its runs with the same helpers.

RAINBOW = {"c51", "nstep3", "per", "dueling", "noisy", "double"}  # rainbow.yaml's `options`
LOSSES = ("mse", "huber", "c51", "two_hot", "hl_gauss")
SUPPORT = -10.0 + 0.4 * torch.arange(51, dtype=torch.float64)  # 51 atoms on [-10, 10] (C51)
GAMMA = 0.99  # defaults.yaml (Nature DQN)
STORED, TERMINATED, TRUNCATED = 1, 2, 4  # bits of replay/buffer.py's per-slot flags


@dataclass(frozen=True)
class Options:
    """The options a variant names (rainbow's parts spelled out) and the value loss it trains."""

    names: frozenset[str]
    loss: str

    @classmethod
    def of(cls, variant: str, *, preset_loss: str = "mse") -> Options:
        """`preset_loss`: the loss without a loss option (defaults.yaml: mse; minatar: huber).
        A loss named outright replaces rainbow's c51 (rainbow.yaml)."""
        named = variant.split("+")
        rainbow = "rainbow" in named
        losses = [name for name in named if name in LOSSES] or ["c51" if rainbow else preset_loss]
        return cls(frozenset(named) | (RAINBOW if rainbow else frozenset()), losses[-1])

    def __contains__(self, name: str) -> bool:
        return name in self.names

    @property
    def atoms(self) -> int:
        """Outputs per action: 51 logits for the categorical losses (C51's atoms), else 1."""
        return 51 if self.loss in ("c51", "two_hot", "hl_gauss") else 1


def rebuild(checkpoint: dict, spec: EnvSpec) -> DQNAgent:
    """The agent a checkpoint holds (both networks, the optimiser, regen's anchors), in eval mode:
    noisy layers at their means, so that every forward pass below is deterministic."""
    config = configs.from_dict(checkpoint["config"])
    agent = build_agent(config, spec, torch.device("cpu"))
    build_interventions(agent, config).restore(checkpoint["agent"]["online"])
    agent.load_state_dict(checkpoint["agent"])
    agent.online.eval()
    agent.target.eval()
    return agent


def trainable(network: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in network.named_parameters() if p.requires_grad}


def weight_names(network: nn.Module) -> set[str]:
    """The trainable weight matrices and kernels, by layer type: `weight` of a Linear or conv
    layer, `weight_mu` of a noisy one; never biases, norm gains or noise scales."""
    names = set()
    for prefix, module in network.named_modules():
        if isinstance(module, nn.Linear | nn.Conv2d | NoisyLinear):
            local = "weight_mu" if isinstance(module, NoisyLinear) else "weight"
            names.add(f"{prefix}.{local}")
    return names & set(trainable(network))


def assert_layer_norms(network: nn.Module, shapes: list[tuple[int, ...]]) -> None:
    """ln: a LayerNorm over each of `shapes` (one sample's activations) right before each hidden
    nonlinearity and nowhere else; `[]`: none, each nonlinearity right after its layer."""
    norms = [m for m in network.modules() if isinstance(m, nn.LayerNorm)]
    assert [tuple(m.normalized_shape) for m in norms] == shapes
    layers = list(network.torso.children())
    before = [layers[i - 1] for i, m in enumerate(layers) if isinstance(m, nn.ReLU)]  # CReLU too
    kind = nn.LayerNorm if shapes else nn.Linear | nn.Conv2d | NoisyLinear
    assert before and all(isinstance(m, kind) for m in before)
    if shapes:
        assert len(before) == len(shapes)


def assert_value_head(state: dict, options: Options, actions: int) -> None:
    """The head's layers and output sizes: A values, or A·51 logits on the C51 support for the
    categorical losses; with dueling a value stream of 1 (or 51) and an advantage stream of A (or
    A·51); with noisy their μ weights."""
    atoms = options.atoms
    rows = (
        {"head.value.fc": atoms, "head.advantage.fc": actions * atoms}
        if "dueling" in options
        else {"head.out": actions * atoms}
    )
    weight = ".weight_mu" if "noisy" in options else ".weight"
    found = {
        key.removesuffix(weight): value.shape[0]
        for key, value in state.items()
        if key.startswith("head.") and key.endswith(weight)
    }
    assert found == rows
    if atoms > 1:
        assert torch.allclose(state["head.support"].double(), SUPPORT, atol=1e-6)
    else:
        assert "head.support" not in state


def assert_dueling(network: nn.Module, states: Tensor) -> None:
    """Q = V + A − mean_a A (Wang et al. 2016, eq. 9; per atom for logits): the output's mean over
    actions is the value stream's output."""
    with torch.no_grad():
        output = network(states)
        value = network.head.value(network.torso(network.scale(states)))
    assert torch.allclose(output.mean(1), value.view(output.mean(1).shape), atol=1e-6)


def assert_noisy(
    network: nn.Module, states: Tensor, options: Options, *, sigma0: float, epsilons: list[float]
) -> None:
    """noisy: every fully connected layer noisy (the convolutions never), σ = σ₀/√p as drawn,
    the output changing with each draw of noise, and ε-greedy off (the logged ε all 0);
    without it, no noisy layer and ε = 1 through the warm-up."""
    found = {name: m for name, m in network.named_modules() if isinstance(m, NoisyLinear)}
    if "noisy" not in options:
        assert not found and epsilons[0] == 1.0
        return
    head = ["head.value.fc", "head.advantage.fc"] if "dueling" in options else ["head.out"]
    assert sorted(found) == sorted(["torso.fc", *head]) and set(epsilons) == {0.0}
    for layer in found.values():  # the updates since moved the mean σ by a few percent at most
        expected = sigma0 / math.sqrt(layer.in_features)
        assert layer.weight_sigma.mean().item() == pytest.approx(expected, rel=0.1)
    network.train()
    with torch.no_grad():
        first = network(states)
        for layer in found.values():
            layer.resample()
        second = network(states)
    network.eval()
    assert not torch.allclose(first, second)


def h(x: Tensor) -> Tensor:
    """h(x) = sign(x)(√(|x| + 1) − 1) + εx, ε = 1e-3 (Pohlen et al. 2018, Sec. 3.2)."""
    return x.sign() * ((x.abs() + 1).sqrt() - 1) + 1e-3 * x


def h_inverse(y: Tensor) -> Tensor:
    """h⁻¹(y) = sign(y)(((√(1 + 4ε(|y| + 1 + ε)) − 1)/(2ε))² − 1) (their Proposition A.2)."""
    eps = 1e-3
    return y.sign() * ((((1 + 4 * eps * (y.abs() + 1 + eps)).sqrt() - 1) / (2 * eps)) ** 2 - 1)


def two_hot_by_hand(v: Tensor) -> Tensor:
    """v clipped to [-10, 10], its mass split between the atoms below and above it (0.4 apart)
    in proportion to nearness."""
    b = (v.clamp(-10.0, 10.0) + 10.0) / 0.4
    low = b.floor().clamp(max=49)
    up = (b - low).unsqueeze(-1)
    return (1 - up) * F.one_hot(low.long(), 51) + up * F.one_hot(low.long() + 1, 51)


def hl_gauss_by_hand(v: Tensor) -> Tensor:
    """The mass of N(v, σ²), σ = 0.75 bin widths = 0.3, in each bin [z_i − 0.2, z_i + 0.2],
    renormalised to [-10.2, 10.2] (Farebrother et al. 2024, Sec. 3.1); v clipped to the atoms."""
    edges = -10.2 + 0.4 * torch.arange(52, dtype=torch.float64)
    z = (edges - v.clamp(-10.0, 10.0).unsqueeze(-1)) / (0.3 * math.sqrt(2))
    cdf = 0.5 * (1 + torch.erf(z))
    return cdf.diff(dim=-1) / (cdf[..., -1:] - cdf[..., :1])


def q_by_hand(output: Tensor, options: Options) -> Tensor:
    """Q in reward units: the output, or its expectation over the support; h⁻¹ of it with
    hyperbolic."""
    q = output.double().softmax(-1) @ SUPPORT if options.atoms > 1 else output.double()
    return h_inverse(q) if "hyperbolic" in options else q


def td_by_hand(
    output: Tensor, next_output: Tensor, batch: Batch, next_action: Tensor, options: Options
) -> tuple[Tensor, Tensor]:
    """(per-sample loss, scalar target r + d·Q̄(s', a*)) of the options' rule, in float64: scalar
    heads fit h(target) (squared or Huber), two-hot and HL-Gauss the encoding of h(target), C51
    the projection of r + d·z under Q̄'s distribution at a* (Bellemare et al. 2017, eq. 7)."""
    rows = torch.arange(len(next_action))
    r, d = batch.reward.double(), batch.discount.double()
    taken, following = output[rows, batch.action].double(), next_output[rows, next_action]
    if options.loss == "c51":
        p = following.double().softmax(-1)
        moved = two_hot_by_hand(r[:, None] + d[:, None] * SUPPORT)  # atom j to r + d·z_j
        projected = torch.einsum("bj,bjk->bk", p, moved)
        return -(projected * taken.log_softmax(-1)).sum(-1), r + d * (p @ SUPPORT)
    target = r + d * q_by_hand(following, options)
    fit = h(target) if "hyperbolic" in options else target
    if options.loss == "mse":
        return (fit - taken) ** 2, target
    if options.loss == "huber":
        error = (fit - taken).abs()
        return torch.where(error < 1, error**2 / 2, error - 0.5), target
    encode = two_hot_by_hand if options.loss == "two_hot" else hl_gauss_by_hand
    return -(encode(fit) * taken.log_softmax(-1)).sum(-1), target


def assert_td_rule(agent: DQNAgent, states: Tensor, options: Options) -> None:
    """Two updates on the run's states against the loss and target worked out by hand: terminal
    transitions (r only: the loss, and h with hyperbolic), then bootstrapped ones with r = 0,
    whose target is γ³·Q̄(s', a*) with a* the online network's argmax with double, the target
    network's without. The target network is first redrawn (another seed), so that the two
    argmaxes differ on some states."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        reset_all(agent.target)
    n, actions = len(states), agent.online.head.num_actions
    taken = torch.arange(n) % actions
    next_states = states.roll(1, 0)
    terminal = Batch(states, taken, torch.tensor([3.0, -0.7, 0.25, 1.0]).repeat(n)[:n],
                     torch.zeros(n), next_states)  # fmt: skip
    bootstrapped = Batch(states, taken, torch.zeros(n), torch.full((n,), GAMMA**3), next_states)
    for batch in (terminal, bootstrapped):
        with torch.no_grad():
            output, online_next = agent.online(states), agent.online(next_states)
            target_next = agent.target(next_states)
        online_argmax = q_by_hand(online_next, options).argmax(1)
        target_argmax = q_by_hand(target_next, options).argmax(1)
        assert (online_argmax != target_argmax).any()  # the batch tells the two rules apart
        rules = [online_argmax, target_argmax][:: 1 if "double" in options else -1]
        loss, target = td_by_hand(output, target_next, batch, rules[0], options)
        _, other_target = td_by_hand(output, target_next, batch, rules[1], options)
        logged = agent.update(batch)
        assert logged["td_loss"].item() == pytest.approx(loss.mean().item(), rel=1e-5)
        magnitude = target.abs().mean().item()
        assert logged["target_magnitude"].item() == pytest.approx(magnitude, rel=1e-5)
    # On the bootstrapped batch the other rule's targets are far from those logged.
    assert other_target.abs().mean().item() != pytest.approx(magnitude, rel=1e-2)


def assert_l2_penalty(agent: DQNAgent, l2: float) -> None:
    """The gradient of the L2 term alone (an optimiser step on a zero loss): d(l2·||w||²)/dw =
    2·l2·w on the weights, 0 on every other parameter (and everywhere without l2)."""
    params = trainable(agent.online)
    before = {name: p.detach().clone() for name, p in params.items()}
    weights = weight_names(agent.online)
    agent.optimise(sum(p.sum() for p in params.values()) * 0.0)
    for name, p in params.items():
        expected = 2 * l2 * before[name] if name in weights else torch.zeros_like(p)
        assert torch.allclose(p.grad, expected, rtol=1e-5, atol=0), name


def assert_weight_decay(agent: DQNAgent, weight_decay: float) -> None:
    """An optimiser step with zero gradients and zero Adam moments, at lr 1, leaves only the
    decoupled decay: θ ← (1 − lr·wd)θ on the weights (Loshchilov & Hutter 2019), nothing else
    moves; with no decay nothing moves. Leaves the optimiser at lr 1: call it last."""
    params = trainable(agent.online)
    for group in agent.optimizer.param_groups:
        group["lr"] = 1.0
    for p in params.values():
        p.grad = torch.zeros_like(p)
        for key in ("exp_avg", "exp_avg_sq"):
            agent.optimizer.state[p][key].zero_()
    before = {name: p.detach().clone() for name, p in params.items()}
    agent.optimizer.step()
    moved = {name for name, p in params.items() if not torch.equal(p, before[name])}
    assert moved == (weight_names(agent.online) if weight_decay else set())
    for name in moved:
        expected = before[name] * (1 - weight_decay)
        assert torch.allclose(params[name], expected, rtol=1e-6, atol=0), name


def reload_replay(replay: dict, options: Options) -> ReplayBuffer:
    """The saved replay in the buffer the options ask for: nstep3's 3-step windows (else 1),
    per's prioritized buffer with α = β = 0.5 (per.yaml), else the uniform one. Loading refuses
    contents saved with another n, γ, α or β."""
    config, n = replay["config"], 3 if "nstep3" in options else 1
    assert (config["n_step"], config["gamma"]) == (n, GAMMA)
    shape, dtype = config["obs_shape"], np.dtype(config["obs_dtype"])
    kwargs = {"frame_stack": config["frame_stack"], "n_step": n, "gamma": GAMMA}
    if "per" in options:
        buffer = PrioritizedReplayBuffer(config["capacity"], config["num_envs"], shape, dtype,
                                         alpha=0.5, beta=0.5, **kwargs)  # fmt: skip
    else:
        buffer = ReplayBuffer(config["capacity"], config["num_envs"], shape, dtype, **kwargs)
    buffer.load_state_dict(replay)
    return buffer


def assert_n_step_returns(replay: dict, batch: Batch, n: int) -> None:
    """Each sampled return is Σ_{k<m} γ^k r_{t+k} of the stored rewards, with discount γ^m, or 0
    past a termination: m = n, or fewer where the episode ended (Sutton & Barto 2018, eq. 7.1);
    and with n > 1 some window sums a reward past its first step."""
    rewards, flags = replay["reward"].numpy().astype(np.float64), replay["flags"].numpy()
    length = flags.shape[1]
    # A reloaded buffer ends each running episode at its newest transition, as truncated.
    running = np.flatnonzero(~replay["at_start"].numpy())
    ends = {(env, (int(replay["pos"][env]) - 2) % length) for env in running}
    later = 0
    for index, ret, discount in zip(batch.index, batch.reward, batch.discount, strict=True):
        env, slot = divmod(int(index), length)
        total, expected = 0.0, GAMMA**n
        for k in range(n):
            at = (env, (slot + k) % length)
            total += GAMMA**k * rewards[at]
            later += k > 0 and rewards[at] != 0
            if flags[at] & (TERMINATED | TRUNCATED) or at in ends:
                expected = 0.0 if flags[at] & TERMINATED else GAMMA ** (k + 1)
                break
        assert ret.item() == pytest.approx(total, rel=1e-6, abs=1e-6)
        assert discount.item() == pytest.approx(expected, rel=1e-6)
    assert later or n == 1


def assert_priorities(replay: dict, batch: Batch, prioritized: bool) -> None:
    """per: a priority for each stored transition and only those, unequal after the updates,
    new transitions entered at the largest seen (the maximum's p^α), importance weights
    (p_i / min_j p_j)^-β with β = 0.5 (Schaul et al. 2016); uniform replay: weights 1."""
    if not prioritized:
        assert "priorities" not in replay and (batch.weight == 1).all()
        return
    stored = replay["flags"].numpy() & STORED > 0
    leaves = replay["priorities"].numpy().reshape(stored.shape)
    assert ((leaves > 0) == stored).all()
    live = leaves[stored]
    assert len(np.unique(live)) > 1 and live.max() == pytest.approx(replay["max_priority"] ** 0.5)
    p = leaves.reshape(-1)[batch.index]
    assert np.allclose(batch.weight.numpy(), (p / p.min()) ** -0.5, rtol=1e-6)


def assert_replay(replay: dict, options: Options) -> None:
    """The saved replay as the options make it: n-step windows and priorities (above), on 256
    transitions sampled from it."""
    batch = reload_replay(replay, options).sample(256, rng=np.random.default_rng(0))
    assert_n_step_returns(replay, batch, 3 if "nstep3" in options else 1)
    assert_priorities(replay, batch, "per" in options)


def stored_rewards(replay: dict) -> set[float]:
    """The distinct rewards of the stored transitions."""
    has = replay["flags"].numpy() & STORED > 0
    return {float(r) for r in np.unique(replay["reward"].numpy()[has])}


OPTIONS = ["double", "nstep3", "no_clip", "hyperbolic", "mse", "huber", "per", "dueling", "noisy",
           "rainbow", "rainbow+ln+wd+hl_gauss"]  # fmt: skip


@pytest.mark.parametrize("variant", sorted(set(configs.grid_variants("plasticity") + OPTIONS)))
def test_every_option_and_the_paper_grid_train_on_a_real_game(variant, tmp_path):
    """Each option changed what it exists to change, read back from the run. On Ms. Pac-Man, whose
    pellets pay 10 from the first steps: clipping, and n-step sums, show in the stored rewards."""
    extra = ["--variant", variant, "--set", "agent.learning_starts=100",
             "--set", "probes.enabled=true", "--set", "probes.interval=200",
             "--set", "probes.ntk_batch=2", "--set", "probes.fit_steps=10",  # run, cheaply
             "--set", "replay.save_contents=true", "--set", "replay.capacity=400"]  # fmt: skip
    argv = smoke(tmp_path, 200, *extra, env="MsPacman")
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.main(argv) == 0
    run_dir = only_run(tmp_path)
    assert f"__{variant}__" in run_dir.name
    tags = scalars(run_dir)
    losses = [e.value for e in tags["losses/td_loss"]]
    assert losses and all(math.isfinite(v) for v in losses)
    assert "plasticity/dormant_fraction" in tags and "plasticity/target_magnitude" in tags
    options = Options.of(variant)
    assert ("plasticity/entropy" in tags) == (options.atoms > 1)
    checkpoint = load_checkpoint(list_checkpoints(run_dir)[-1])
    agent = rebuild(checkpoint, EnvSpec("ms_pacman", True, (4, 84, 84), np.dtype("uint8"), 9, 4))
    states = checkpoint["probes"]["batch"]  # distinct states of the run
    # ln: the Nature CNN's maps are 84 → (84 − 8)/4 + 1 = 20 → (20 − 4)/2 + 1 = 9 → 9 − 3 + 1 = 7.
    norms = [(32, 20, 20), (64, 9, 9), (64, 7, 7), (512,)]
    assert_layer_norms(agent.online, norms if "ln" in options else [])
    assert_value_head(checkpoint["agent"]["online"], options, actions=9)
    if "dueling" in options:
        assert_dueling(agent.online, states)
    epsilons = [e.value for e in tags["charts/epsilon"]]
    sigma0 = 0.1 if "rainbow" in options else 0.5  # noisy.yaml; rainbow.yaml: Dopamine's 0.1
    assert_noisy(agent.online, states, options, sigma0=sigma0, epsilons=epsilons)
    assert_replay(checkpoint["replay"], options)
    rewards = stored_rewards(checkpoint["replay"]) - {0.0}  # no_clip: as paid; else clipped to 1
    assert min(rewards) >= 10 if "no_clip" in options else rewards == {1.0}
    assert_td_rule(agent, states, options)
    assert_l2_penalty(agent, 1e-5 if "l2" in options else 0.0)  # l2.yaml
    assert_weight_decay(agent, 0.01 if "wd" in options else 0.0)  # wd.yaml


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


# many seeds in one process ------------------------------------------------------------------


def test_replay_buffers_beyond_the_available_memory_are_refused_with_the_figure(tmp_path):
    """check_memory reads MemAvailable (here from a file of 1 GiB): 3 CartPole seeds of 20M
    transitions need 3 x 20M x (4 float32 + int32 action + float32 reward + uint8 flags =
    25 bytes) = 1.397 GiB."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 2097152 kB\nMemAvailable: 1048576 kB\n")
    sets = ["replay.capacity=20000000", "train.total_steps=30000000"]
    config = configs.resolve(preset="classic", assignments=sets)
    seeds = [replace(config, train=replace(config.train, seed=s)) for s in (1, 2, 3)]
    with pytest.raises(configs.UserError) as refused:
        check_memory(seeds, meminfo=meminfo)
    message = str(refused.value)
    assert "3 seed(s) need 1.4 GiB of replay buffers (0.47 GiB each for 20,000,000" in message
    assert "1.0 GiB of memory is available" in message and "(at most 2)" in message
    check_memory(seeds[:2], meminfo=meminfo)  # 0.93 GiB fits
    # A budget of 10M steps fills half of each buffer: 3 x 0.23 GiB fit.
    short = [replace(s, train=replace(s.train, total_steps=10_000_000)) for s in seeds]
    check_memory(short, meminfo=meminfo)


def test_a_three_seed_run_writes_three_ordinary_runs_and_resumes_them_all(tmp_path):
    """--seeds 1-3 --run-name r{seed}: three run directories, each an ordinary run (its config,
    events, checkpoints naming the seeds trained with it); --resume of one resumes all three."""
    argv = ["--env", "CartPole-v1", "--preset", "classic", "--logdir", str(tmp_path),
            "--set", "probes.enabled=false", "--set", "eval.interval=0",
            "--set", "agent.learning_starts=200",
            "--set", "train.checkpoint_interval=300"]  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()):
        assert (
            train.main([*argv, "--seeds", "1-3", "--run-name", "r{seed}", "--total-steps", "600"])
            == 0
        )
    group = [{"run": f"r{s}", "seed": s} for s in (1, 2, 3)]
    for seed in (1, 2, 3):
        run_dir = tmp_path / f"r{seed}"
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["train"]["seed"] == seed
        checkpoint = load_checkpoint(list_checkpoints(run_dir)[-1])
        assert checkpoint["step"] >= 600 and checkpoint["seed_group"] == group
        assert checkpoint["config"]["train"]["seed"] == seed
        events = EventAccumulator(str(run_dir))
        events.Reload()
        assert events.Scalars("losses/td_loss")
    # Each seed's own stream: the three runs learned differently.
    finals = [load_checkpoint(list_checkpoints(tmp_path / f"r{s}")[-1]) for s in (1, 2, 3)]
    weights = [f["agent"]["online"]["head.out.weight"] for f in finals]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert train.main(["--resume", str(tmp_path / "r2"), "--total-steps", "900"]) == 0
    for seed in (1, 2, 3):
        assert f"resuming {tmp_path / f'r{seed}'} at step" in err.getvalue()
        assert load_checkpoint(list_checkpoints(tmp_path / f"r{seed}")[-1])["step"] >= 900
        assert (
            yaml.safe_load((tmp_path / f"r{seed}" / "config.yaml").read_text())["train"][
                "total_steps"
            ]
            == 900
        )


def test_a_finished_run_rerun_by_the_same_command_just_says_done(tmp_path):
    argv = ["--env", "CartPole-v1", "--preset", "classic", "--logdir", str(tmp_path),
            "--total-steps", "400", "--run-name", "r{seed}", "--seeds", "1-2",
            "--set", "probes.enabled=false", "--set", "eval.interval=0"]  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.main(argv) == 0
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert train.main(argv) == 0  # a requeued job: nothing left to train
    assert err.getvalue().count("Done: ") == 2 and "Traceback" not in err.getvalue()


def test_a_seed_that_diverges_stops_alone_and_the_others_train_on(tmp_path):
    """Seed 2's parameters poisoned in place (through its module, a view of the stacks): it stops
    at the next boundary with one error line naming its run, never saves the NaN, and seed 1
    reaches its budget; the process exits 2."""
    config = configs.resolve(
        preset="classic",
        assignments=[
            "probes.enabled=false",
            "eval.interval=0",
            "train.total_steps=1200",
            "agent.learning_starts=200",
            "train.checkpoint_interval=400",
        ],  # fmt: skip
    )
    launches = [
        (replace(config, train=replace(config.train, seed=s)), tmp_path / f"s{s}", None)
        for s in (1, 2)
    ]
    for _, run_dir, _ in launches:
        run_dir.mkdir()
    trainer = train.Trainer(launches)
    with torch.no_grad():
        trainer.runs[1].agent.online.head.out.weight[0, 0] = float("nan")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert trainer.run() == 2
    line = r"^error: (?:td_loss|parameter \S+) is nan at step \d+ .*\((\S+)\)$"
    assert re.findall(line, err.getvalue(), re.M) == [str(tmp_path / "s2")], err.getvalue()
    assert list_checkpoints(tmp_path / "s2") == []
    assert load_checkpoint(list_checkpoints(tmp_path / "s1")[-1])["step"] >= 1200
