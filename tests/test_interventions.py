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
from agents import agent_from_checkpoint, build_agent, find_checkpoint, load_checkpoint
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


def scalars(run_dir) -> dict[str, list]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.parametrize("base", ["", "ln+wd+hl_gauss+"])
def test_every_option_trains_on_breakout_logs_its_events_and_resumes_past_injection(base, tmp_path):
    variant = base + "+".join(OPTIONS)
    argv = ["--env", "Breakout", "--preset", "smoke", "--logdir", str(tmp_path), "--run-name",
            "run", "--variant", variant, "--total-steps", "300",
            "--set", "agent.learning_starts=100", "--set", "probes.interval=300",
            "--set", "interventions.redo.interval=20", "--set", "interventions.inject.at=30",
            "--set", "interventions.reset_head.interval=40",
            "--set", "interventions.shrink_perturb.interval=10"]  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.main(argv) == 0
        argv[argv.index("300")] = "340"  # resumes the named run past the injection
        assert train.main(argv) == 0
    tags = scalars(tmp_path / "run")
    for name in ["redo", "shrink_perturb", "reset_head", "regen"]:
        assert tags[f"interventions/{name}"], name
    assert len(tags["interventions/inject"]) == 1  # once, not again on resume
    assert "plasticity/dormant_fraction/torso.crelu_fc" in tags
    checkpoint = load_checkpoint(find_checkpoint(tmp_path / "run"))
    assert checkpoint["step"] >= 340
    config = configs.from_dict(checkpoint["config"])
    spec = EnvSpec("breakout", True, (4, 84, 84), np.dtype("uint8"), 4, 4)
    agent = agent_from_checkpoint(checkpoint, config, spec, device=torch.device("cpu"))
    assert isinstance(agent.online.head, InjectedHead)
    frames = torch.randint(0, 255, (3, 4, 84, 84), dtype=torch.uint8)
    assert measure(agent.online, frames, ntk_batch=2)["ntk_rank"] >= 1


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
