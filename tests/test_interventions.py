"""Interventions on tiny networks with hand-worked numbers, and every option on real Breakout."""

from __future__ import annotations

import contextlib
import copy
import io
import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import configs
import train
from agents import build_agent, build_interventions, find_checkpoint, load_checkpoint
from configs import UserError, resolve
from envs import EnvSpec
from interventions import InjectedHead, Interventions
from interventions.inject import inject
from interventions.redo import recycle
from interventions.regen import regen_penalty
from interventions.resets import FreshDraws, reset_last_layers, shrink_perturb
from networks import CReLU, DuelingHead, QNetwork, ScalarHead, build_network
from networks.torsos import MLP, layer_norm
from probes import measure
from replay import Batch

OPTIONS = ["redo", "shrink_perturb", "reset_head", "inject", "regen", "crelu"]


def tiny(hidden: list[int], *, act: type[nn.Module] = nn.ReLU) -> QNetwork:
    """2 inputs -> MLP(hidden) -> 2 scalar Q-values, initialised from seed 0."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torso = MLP(2, hidden=hidden, act=act)
        return QNetwork(torso, ScalarHead(torso.out_features, 2))


def adam_with_moments(net: nn.Module) -> torch.optim.Adam:
    """Adam after one step, so every parameter has nonzero moments to witness the resets."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(8, 2, generator=torch.Generator().manual_seed(0))).square().sum().backward()
    optimizer.step()
    return optimizer


def filled(net: nn.Module, value: float) -> dict[str, torch.Tensor]:
    """A stand-in 'fresh initialisation' whose every entry is `value`: re-initialised entries
    show up exactly."""
    return {name: torch.full_like(p, value) for name, p in net.named_parameters()}


def moments(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> list[torch.Tensor]:
    return [optimizer.state[p][key].clone() for key in ("exp_avg", "exp_avg_sq")]


def test_redo_recycles_exactly_the_units_scoring_at_most_tau():
    net = tiny([3])
    optimizer = adam_with_moments(net)
    fc, out = net.torso.fc1, net.head.out
    with torch.no_grad():  # unit 0 = relu(x0), unit 1 = relu(-1) = 0, unit 2 = relu(0.05 x1)
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.05]]))
        fc.bias.copy_(torch.tensor([0.0, -1.0, 0.0]))
    obs = torch.tensor([[1.0, 1.0], [3.0, 1.0]])
    # E|a| = [2, 0, 0.05], mean 0.6833: scores [2.93, 0, 0.073], so tau = 0.1 takes units 1 and 2.
    before = {name: p.clone() for name, p in net.named_parameters()}
    fc_moments, out_moments = moments(optimizer, fc.weight), moments(optimizer, out.weight)
    assert recycle(net, optimizer, obs, filled(net, 7.0), tau=0.1) == 2

    assert torch.equal(fc.weight[0], before["torso.fc1.weight"][0]) and fc.bias[0] == 0.0
    assert (fc.weight[1:] == 7.0).all() and (fc.bias[1:] == 7.0).all()
    assert torch.equal(out.weight[:, 0], before["head.out.weight"][:, 0])
    assert (out.weight[:, 1:] == 0.0).all()
    assert torch.equal(out.bias, before["head.out.bias"])
    for old, new in zip(fc_moments, moments(optimizer, fc.weight), strict=True):
        assert torch.equal(new[0], old[0]) and (old[0] != 0).all() and (new[1:] == 0).all()
    for old, new in zip(out_moments, moments(optimizer, out.weight), strict=True):
        assert torch.equal(new[:, 0], old[:, 0]) and (new[:, 1:] == 0).all()
    assert (optimizer.state[fc.bias]["exp_avg"][1:] == 0).all()


def test_redo_recycles_a_crelu_unit_only_when_both_of_its_outputs_are_dormant():
    net = tiny([2], act=CReLU)
    optimizer = adam_with_moments(net)
    with torch.no_grad():  # unit 0 = x0 > 0: [x0, 0] (one output dormant); unit 1 = 0: [0, 0]
        net.torso.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        net.torso.fc1.bias.zero_()
    obs = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    assert recycle(net, optimizer, obs, filled(net, 7.0), tau=0.1) == 1
    assert net.torso.fc1.weight[0, 0] == 1.0 and (net.torso.fc1.weight[1] == 7.0).all()
    # Outgoing columns of unit 1 are its two outputs, columns 1 and 3 of [relu(z), relu(-z)].
    assert (net.head.out.weight[:, [1, 3]] == 0).all() and (
        net.head.out.weight[:, [0, 2]] != 0
    ).all()


def test_shrink_perturb_is_lambda_theta_plus_sigma_theta_fresh():
    net = tiny([3])
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(2.0)
    touched = shrink_perturb(net, filled(net, 10.0), shrink=0.5, perturb=0.25)
    assert touched == sum(p.numel() for p in net.parameters()) == 9 + 8
    assert all((p == 0.5 * 2.0 + 0.25 * 10.0).all() for p in net.parameters())


def test_fresh_draws_are_the_layers_own_init_seeded_and_leave_the_global_rng_alone():
    net = tiny([3])
    draws = FreshDraws(net)
    state = torch.random.get_rng_state()
    first, again, other = draws.draw(1), draws.draw(1), draws.draw(2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["torso.fc1.weight"], other["torso.fc1.weight"])
    # nn.Linear's default init: weights within 1/sqrt(fan_in) (Kaiming uniform, a = sqrt(5)).
    assert first["torso.fc1.weight"].abs().max() <= 1 / math.sqrt(2)


def test_reset_head_resets_exactly_the_last_k_layers_and_their_moments():
    net = QNetwork(MLP(2, hidden=[3, 4], norm=layer_norm), DuelingHead(4, 2))
    optimizer = adam_with_moments(net)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(3.0)
    head = {n for n, _ in net.named_parameters() if n.startswith("head.")}
    fc2 = {"torso.fc2.weight", "torso.fc2.bias", "torso.norm_fc2.weight", "torso.norm_fc2.bias"}
    for layers, reset in [(1, head), (2, head | fc2)]:
        touched = reset_last_layers(net, optimizer, filled(net, 7.0), layers=layers)
        params = dict(net.named_parameters())
        assert touched == sum(params[n].numel() for n in reset)
        for name, p in params.items():
            assert (p == (7.0 if name in reset else 3.0)).all(), name
            assert (optimizer.state[p]["exp_avg_sq"] == 0).all() == (name in reset), name
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(3.0)


def injected_pair():
    net = tiny([4])
    target = copy.deepcopy(net).requires_grad_(False)
    with torch.no_grad():
        target.head.out.weight.add_(1.0)  # a lagging target: its own output must survive too
    return net, target


def test_injection_leaves_the_output_unchanged_and_trains_only_the_new_head():
    net, target = injected_pair()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    before, target_before = net(x), target(x)
    assert inject([net, target], optimizer, seed=3) == 4 * 2 + 2
    assert isinstance(net.head, InjectedHead) and isinstance(target.head, InjectedHead)
    assert torch.equal(net(x), before) and torch.equal(target(x), target_before)
    frozen = {n: p.clone() for n, p in net.named_parameters()}
    net(x).square().sum().backward()
    optimizer.step()
    params = dict(net.named_parameters())
    for name in ["head.frozen.out.weight", "head.fresh_frozen.out.weight"]:
        assert torch.equal(params[name], frozen[name]) and not params[name].requires_grad
    assert not torch.equal(params["head.fresh.out.weight"], net.head.fresh_frozen.out.weight)
    # The torso keeps learning, through all three heads (Nikishin et al. 2023).
    assert not torch.equal(params["torso.fc1.weight"], frozen["torso.fc1.weight"])


def test_a_saved_injected_network_and_its_optimiser_are_rebuilt_before_loading():
    config = resolve(variant="inject", assignments=["interventions.inject.at=2"]).interventions
    net, target = injected_pair()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    events = Interventions(config, net, optimizer, seed=0, mirrors=[target])
    x = torch.randn(5, 2)
    assert events.after_update(1, x) == {} and events.after_update(2, x) == {"inject": 10.0}
    assert events.after_update(3, x) == {}
    net(x).sum().backward()
    optimizer.step()
    saved = (net.state_dict(), optimizer.state_dict())
    fresh_net, fresh_target = injected_pair()
    fresh_optimizer = torch.optim.AdamW(fresh_net.parameters(), lr=1e-2)
    Interventions(config, fresh_net, fresh_optimizer, seed=0, mirrors=[fresh_target]).restore(
        saved[0]
    )
    fresh_net.load_state_dict(saved[0])
    fresh_optimizer.load_state_dict(saved[1])
    assert torch.equal(fresh_net(x), net(x)) and len(fresh_optimizer.param_groups) == 2


def test_regen_moves_each_weight_toward_its_initial_value_by_2_eta_lambda():
    theta, theta0 = torch.tensor([2.0, -1.0], requires_grad=True), torch.tensor([1.0, 1.0])
    penalty = regen_penalty([theta], [theta0])
    assert penalty.item() == 1.0 + 4.0
    (0.5 * penalty).backward()  # lambda = 0.5
    torch.optim.SGD([theta], lr=0.1).step()  # theta - 2 * 0.1 * 0.5 * (theta - theta0)
    assert torch.allclose(theta, torch.tensor([1.9, -0.8]))


def test_the_agent_adds_regen_and_keeps_its_anchors_in_the_checkpoint():
    spec = EnvSpec("CartPole-v1", False, (4,), np.dtype("float32"), 2, 1)
    config = resolve(preset="classic", variant="regen")
    agent = build_agent(config, spec, torch.device("cpu"))
    initial = {name: p.detach().clone() for name, p in agent.online.named_parameters()}
    obs = torch.randn(4, 4)
    batch = Batch(obs, torch.zeros(4, dtype=torch.int64), torch.ones(4), torch.full((4,), 0.9), obs)
    assert agent.update(batch)["interventions/regen"] == 0.0  # at θ⁰ the pull is zero
    weights = ["torso.fc1.weight", "torso.fc2.weight", "head.out.weight"]  # biases are not pulled
    now = dict(agent.online.named_parameters())
    moved = sum((now[n] - initial[n]).square().sum() for n in weights)
    assert torch.isclose(agent.update(batch)["interventions/regen"], moved)
    other = build_agent(config, spec, torch.device("cpu"))
    other.load_state_dict(agent.state_dict())
    assert sorted(other.anchors) == sorted(weights)
    assert all(torch.equal(other.anchors[n], initial[n]) for n in weights)


def test_crelu_concatenates_relu_of_z_and_of_minus_z_along_the_unit_dimension():
    assert CReLU()(torch.tensor([[1.0, -2.0, 0.0]])).tolist() == [[1.0, 0.0, 0.0, 0.0, 2.0, 0.0]]
    maps = CReLU()(torch.tensor([-3.0, 4.0]).view(1, 2, 1, 1))
    assert maps.flatten().tolist() == [0.0, 4.0, 3.0, 0.0]


def test_probes_count_a_crelus_outputs_as_units():
    net = tiny([2], act=CReLU)
    with torch.no_grad():
        net.torso.fc1.weight.copy_(torch.eye(2))
        net.torso.fc1.bias.zero_()
    figures = measure(net, torch.tensor([[1.0, 1.0], [2.0, 2.0]]), ntk_batch=0)
    # Outputs [z0, z1, 0, 0]: E|a| = [1.5, 1.5, 0, 0], scores [2, 2, 0, 0]; both z always > 0.
    assert figures["dormant_fraction/torso.crelu_fc1"] == 0.5
    assert figures["linearized_fraction/torso.crelu_fc1"] == 1.0


def test_crelu_keeps_the_parameter_count_within_2_percent():
    for shape in [(4,), (4, 84, 84)]:
        counts = [
            sum(p.numel() for p in build_network(shape, 4, config, categorical=False).parameters())
            for config in (resolve().network, resolve(variant="crelu").network)
        ]
        assert abs(counts[1] / counts[0] - 1) < 0.02, counts


def test_options_combine_and_inject_with_noisy_layers_is_refused():
    config = resolve(variant="+".join(["ln", "wd", "hl_gauss", *OPTIONS]))
    assert config.network.nonlinearity == "crelu" and config.agent.regen > 0
    i = config.interventions
    assert i.redo.enabled and i.shrink_perturb.enabled and i.reset_head.enabled and i.inject.enabled
    with pytest.raises(UserError, match="noisy"):
        resolve(variant="rainbow+inject")
    assert configs.grid_variants("interventions")[:2] == ["dqn", "ln+wd"]


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


# The CReLU Nature CNN on Breakout's 4 actions: the widths 32, 64, 64, 512 over √2 round to 23, 45,
# 45 and 362 (crelu.yaml), and each layer reads twice the units before it, [relu(z), relu(−z)].
CRELU_SHAPES = {
    "torso.conv1.weight": (23, 4, 8, 8),
    "torso.conv2.weight": (45, 46, 4, 4),
    "torso.conv3.weight": (45, 90, 3, 3),
    "torso.fc.weight": (362, 90 * 7 * 7),
}
CRELU_TORSO = sum(math.prod(s) + s[0] for s in CRELU_SHAPES.values())  # weights and biases
CRELU_NORMS = [(23, 20, 20), (45, 9, 9), (45, 7, 7), (362,)]  # ln, over maps 84 → 20 → 9 → 7
CRELU_UNITS = 23 + 45 + 45 + 362


def at_updates(*updates: int) -> list[int]:
    """The steps at which the events of these updates are logged. Smoke preset: 2 envs and an
    update every 4 steps from step 100, so update u runs in the iteration that starts at step
    102 + 4(u − 1) and is logged at the step after it, 4u + 100."""
    return [4 * u + 100 for u in updates]


def assert_events(logged: dict, *, ln: bool, outputs: int) -> None:
    """Each intervention fired on its schedule, over 40 updates and 10 more after the resume, and
    touched what it exists to: ReDo some hidden units; shrink-and-perturb every trainable
    parameter (after injection the torso and the new head: as many as before); injection and the
    head reset the new head's parameters; regen's distance ||θ − θ⁰||² is positive."""
    names = ["redo", "shrink_perturb", "reset_head", "inject", "regen"]
    steps = {name: [s for s, _ in logged[f"interventions/{name}"]] for name in names}
    assert steps == {
        "redo": at_updates(25, 50),
        "shrink_perturb": at_updates(10, 20, 30, 40, 50),
        "reset_head": at_updates(40),
        "inject": at_updates(30),  # once, not again on resume
        "regen": [200, 300],  # logged with the losses, every 100 steps
    }
    values = {name: [v for _, v in logged[f"interventions/{name}"]] for name in names}
    head = outputs * (724 + 1)  # weights and biases
    norms = 2 * sum(map(math.prod, CRELU_NORMS)) if ln else 0  # gains and offsets
    assert all(0 < v <= CRELU_UNITS for v in values["redo"]), values["redo"]
    assert values["shrink_perturb"] == [CRELU_TORSO + norms + head] * 5
    assert values["inject"] == values["reset_head"] == [head]
    assert all(v > 0 for v in values["regen"])


def assert_crelu_and_layer_norms(online: nn.Module, state: dict, *, ln: bool) -> None:
    """crelu: a CReLU after every hidden layer, at the widths above; ln: a LayerNorm before each."""
    assert {name: tuple(state[name].shape) for name in CRELU_SHAPES} == CRELU_SHAPES
    crelus = [name for name, m in online.named_modules() if isinstance(m, CReLU)]
    assert crelus == [f"torso.crelu_{layer}" for layer in ("conv1", "conv2", "conv3", "fc")]
    norms = [tuple(m.normalized_shape) for m in online.modules() if isinstance(m, nn.LayerNorm)]
    assert norms == (CRELU_NORMS if ln else [])


def assert_injected(agent, saved: dict, *, wd: bool) -> None:
    """inject: the old head and a copy of the new one frozen, in both networks; of the head only
    the new one learns, each parameter in a group like its old one's (AdamW: decay on the weight).
    reset_head, 10 updates after injection: the new head was drawn afresh, far from its copy
    frozen at injection; the 20 updates since could move it by 20 · 3.2 · lr = 0.004 at most."""
    online = agent.online
    assert isinstance(online.head, InjectedHead) and isinstance(agent.target.head, InjectedHead)
    for network in ("online", "target"):
        heads = {".".join(name.split(".")[:2]) for name in saved[network] if name[:5] == "head."}
        assert heads == {"head.frozen", "head.fresh", "head.fresh_frozen"}, network
    learning = {name: p for name, p in online.named_parameters() if p.requires_grad}
    assert {name for name in learning if name.startswith("head.")} == {
        "head.fresh.out.weight",
        "head.fresh.out.bias",
    }
    decay = {id(p): g["weight_decay"] for g in agent.optimizer.param_groups for p in g["params"]}
    new_head = [decay[id(learning[f"head.fresh.out.{leaf}"])] for leaf in ("weight", "bias")]
    assert new_head == ([0.01, 0.0] if wd else [0, 0])
    state = saved["online"]
    fresh, at_injection = state["head.fresh.out.weight"], state["head.fresh_frozen.out.weight"]
    assert (fresh - at_injection).abs().median() > 0.02


def assert_last_update(state: dict, recycled: float, *, outputs: int) -> None:
    """After update 50, the run's last, ReDo zeroed the outgoing weights of the fc units it
    recycled, 2 columns per CReLU unit, in every head: the frozen copy keeps those zeros. In the
    learning head shrink-and-perturb, right after, made them 0.999999 · 0 + 1e-6 · θ_fresh:
    nonzero, and at most 1e-6 times the head's xavier_uniform bound √(6 / (724 + outputs))."""
    columns = (state["head.fresh_frozen.out.weight"] == 0).all(0)
    assert 0 < columns.sum() <= 2 * recycled
    perturbed = state["head.fresh.out.weight"][:, columns]
    bound = 1e-6 * math.sqrt(6 / (724 + outputs)) * (1 + 1e-6)
    assert (perturbed != 0).all() and (perturbed.abs() <= bound).all()


def assert_regen(agent, checkpoint: dict) -> None:
    """regen: θ⁰ is the network as initialised (kept by the run for the probes) and the new head
    as injected (its frozen copy, but for the columns ReDo zeroed since: the outgoing weights of
    units it recycled), for the weights only; the loss adds 1e-5 · ||θ − θ⁰||², whose gradient
    alone (a zero TD loss) is 2e-5 · (θ − θ⁰) on the weights and 0 elsewhere."""
    online, anchors = agent.online, checkpoint["agent"]["anchors"]
    learning = {name: p for name, p in online.named_parameters() if p.requires_grad}
    layers = nn.Linear | nn.Conv2d
    weights = {f"{n}.weight" for n, m in online.named_modules() if isinstance(m, layers)}
    assert set(anchors) == weights & set(learning)
    initial = checkpoint["probes"]["initial"]
    assert all(torch.equal(anchors[n], initial[n]) for n in anchors if n.startswith("torso."))
    at_injection = checkpoint["agent"]["online"]["head.fresh_frozen.out.weight"]
    kept = (at_injection != 0).any(0)
    assert kept.sum() > 0.9 * 724
    assert torch.equal(anchors["head.fresh.out.weight"][:, kept], at_injection[:, kept])
    before = {name: p.detach().clone() for name, p in learning.items()}
    agent.optimise(sum(p.sum() for p in learning.values()) * 0.0)
    for name, p in learning.items():
        expected = 2e-5 * (before[name] - anchors[name]) if name in anchors else 0 * p
        assert torch.allclose(p.grad, expected, rtol=1e-5, atol=0), name


@pytest.mark.parametrize("base", ["", "ln+wd+hl_gauss+"])
def test_every_option_trains_on_breakout_logs_its_events_and_resumes_past_injection(base, tmp_path):
    """Every intervention, with and without ln+wd+hl_gauss, changed what it exists to change,
    read back from the run's events and its checkpoint after a resume past the injection."""
    variant = base + "+".join(OPTIONS)
    argv = ["--env", "Breakout", "--preset", "smoke", "--logdir", str(tmp_path), "--run-name",
            "run", "--variant", variant, "--total-steps", "260",
            "--set", "agent.learning_starts=100", "--set", "probes.interval=300",
            "--set", "probes.ntk_batch=8", "--set", "probes.fit_steps=10",
            "--set", "replay.save_contents=true", "--set", "replay.capacity=400",
            "--set", "interventions.redo.interval=25", "--set", "interventions.inject.at=30",
            "--set", "interventions.reset_head.interval=40",
            "--set", "interventions.shrink_perturb.interval=10"]  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.main(argv) == 0
        argv[argv.index("260")] = "300"  # resumes the named run, and its replay, past injection
        assert train.main(argv) == 0
    logged = scalars(tmp_path / "run")
    ln, outputs = base.startswith("ln"), 4 * 51 if "hl_gauss" in base else 4  # 4 actions (x 51)
    assert_events(logged, ln=ln, outputs=outputs)
    assert "plasticity/dormant_fraction/torso.crelu_fc" in logged
    # The resumed run probed its restored, injected network at step 300.
    assert [s for s, v in logged["plasticity/ntk_rank"] if v >= 1] == [0, 300]
    checkpoint = load_checkpoint(find_checkpoint(tmp_path / "run"))
    assert (checkpoint["step"], checkpoint["agent"]["updates"]) == (300, 50)
    config = configs.from_dict(checkpoint["config"])
    spec = EnvSpec("breakout", True, (4, 84, 84), np.dtype("uint8"), 4, 4)
    agent = build_agent(config, spec, torch.device("cpu"))
    build_interventions(agent, config).restore(checkpoint["agent"]["online"])
    agent.load_state_dict(checkpoint["agent"])
    state = checkpoint["agent"]["online"]
    assert_crelu_and_layer_norms(agent.online, state, ln=ln)
    assert_injected(agent, checkpoint["agent"], wd=ln)
    assert_last_update(state, logged["interventions/redo"][-1][1], outputs=outputs)
    assert_regen(agent, checkpoint)  # last: it steps the optimiser


def test_a_regen_checkpoint_saved_before_anchors_had_names_resumes_with_its_anchors():
    # Then the anchors were a list: every parameter of more than one dimension, in order.
    spec = EnvSpec("CartPole-v1", False, (4,), np.dtype("float32"), 2, 1)
    config = resolve(preset="classic", variant="regen+ln")
    agent = build_agent(config, spec, torch.device("cpu"))
    state = agent.state_dict()
    old = [p.detach() + 1.0 for p in agent.online.parameters() if p.ndim > 1]
    state["anchors"] = old
    agent.load_state_dict(state)
    assert sorted(agent.anchors) == ["head.out.weight", "torso.fc1.weight", "torso.fc2.weight"]
    assert torch.equal(agent.anchors["torso.fc2.weight"], old[1])
    state["anchors"] = []  # a checkpoint of a run without regen
    agent.load_state_dict(state)
