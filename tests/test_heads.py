"""Dueling heads and noisy layers: worked numbers, gradients, noise statistics, and what the
probes and the agent see of them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import only_run
from torch import nn

import configs
import probes
import train
from agents import agent_from_checkpoint, build_agent, find_checkpoint, load_checkpoint
from configs import resolve
from envs import EnvSpec
from networks import CategoricalDuelingHead, DuelingHead, NoisyLinear, build_network
from replay import Batch


def set_linear(layer: nn.Module, bias: list[float]) -> None:
    """Zero weights and the given bias: the layer outputs `bias` for every input."""
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor(bias))


def test_dueling_q_is_value_plus_advantage_minus_its_mean() -> None:
    head = DuelingHead(3, num_actions=3)
    set_linear(head.value.fc, [2.0])
    set_linear(head.advantage.fc, [1.0, 2.0, 6.0])
    # mean A = 3: Q = 2 + [1, 2, 6] - 3 = [0, 1, 5]
    torch.testing.assert_close(head(torch.randn(2, 3)), torch.tensor([[0.0, 1.0, 5.0]] * 2))


def test_categorical_dueling_combines_logits_per_atom() -> None:
    support = torch.tensor([-1.0, 1.0])
    head = CategoricalDuelingHead(3, num_actions=2, support=support)
    set_linear(head.value.fc, [0.5, -0.5])  # v_k
    set_linear(head.advantage.fc, [1.0, 0.0, 3.0, 2.0])  # a(s, 0) = [1, 0], a(s, 1) = [3, 2]
    logits = head(torch.zeros(1, 3))
    # mean_a a_k = [2, 1]: logits = v + a - mean = [[-0.5, -1.5], [1.5, 0.5]]
    torch.testing.assert_close(logits, torch.tensor([[[-0.5, -1.5], [1.5, 0.5]]]))
    # Both actions: softmax of logits differing by 1 -> P(z = -1) = e / (1 + e).
    p = math.e / (1 + math.e)
    torch.testing.assert_close(head.q_values(logits), torch.tensor([[1 - 2 * p, 1 - 2 * p]]))


def test_the_value_stream_gets_the_gradient_of_every_action() -> None:
    head = DuelingHead(4, num_actions=3)
    q = head(torch.randn(1, 4))
    q[0, 0].backward()  # dQ(s, 0)/dV = 1; dQ(s, 0)/dA(s, b) = [b = 0] - 1/3
    torch.testing.assert_close(head.value.fc.bias.grad, torch.tensor([1.0]))
    torch.testing.assert_close(head.advantage.fc.bias.grad, torch.tensor([2 / 3, -1 / 3, -1 / 3]))


def test_noisy_layer_output_variance_matches_its_sigma() -> None:
    torch.manual_seed(0)
    layer = NoisyLinear(3, 2)
    with torch.no_grad():
        layer.weight_sigma.copy_(torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.0, 0.2]]))
        layer.bias_sigma.copy_(torch.tensor([0.5, 0.1]))
    x = torch.tensor([1.0, -2.0, 0.5])
    outputs = []
    with torch.no_grad():
        for _ in range(20_000):
            layer.resample()
            outputs.append(layer(x))
    y = torch.stack(outputs).double()
    # y_j - E y_j = f(ε_j) (Σ_i σ_ji x_i f(ε_i) + σ_bj), f(ε)² = |ε|, E|ε| = √(2/π):
    # Var y_j = √(2/π) (√(2/π) Σ_i σ_ji² x_i² + σ_bj²).
    c = math.sqrt(2 / math.pi)
    sigma_w, sigma_b = layer.weight_sigma.detach().double(), layer.bias_sigma.detach().double()
    expected = c * (c * (sigma_w**2 * x.double() ** 2).sum(1) + sigma_b**2)
    torch.testing.assert_close(y.var(0), expected, rtol=0.05, atol=0)
    mean = layer.weight_mu.detach() @ x + layer.bias_mu.detach()
    torch.testing.assert_close(y.mean(0).float(), mean, atol=0.02, rtol=0)


def test_noisy_layer_with_zero_sigma_is_a_plain_linear_layer() -> None:
    layer = NoisyLinear(5, 3, sigma0=0.0)
    plain = nn.Linear(5, 3)
    with torch.no_grad():
        plain.weight.copy_(layer.weight_mu)
        plain.bias.copy_(layer.bias_mu)
    x = torch.randn(7, 5)
    for _ in range(3):
        layer.resample()
        torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=0)


def test_noisy_layer_initialisation_follows_fortunato_factorised() -> None:
    layer = NoisyLinear(64, 10)  # σ = 0.5 / √64 = 0.0625; μ in [-1/8, 1/8]
    assert torch.all(layer.weight_sigma == 0.0625) and torch.all(layer.bias_sigma == 0.0625)
    assert layer.weight_mu.abs().max() <= 0.125 and layer.bias_mu.abs().max() <= 0.125


def rainbow_net() -> nn.Module:
    config = resolve(variant="rainbow").network
    return build_network((4, 84, 84), 4, config, categorical=True)


def test_rainbow_makes_every_fully_connected_layer_noisy_and_the_probes_name_them() -> None:
    net = rainbow_net()
    noisy = [name for name, m in net.named_modules() if isinstance(m, NoisyLinear)]
    assert noisy == ["torso.fc", "head.value.fc", "head.advantage.fc"]  # Dopamine's FullRainbow
    assert net.torso.fc.weight_sigma[0, 0].item() == pytest.approx(0.1 / math.sqrt(3136))
    figures = probes.measure(net, torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8),
                             ntk_batch=4, ntk_readout=net.q_values)  # fmt: skip
    for name in noisy:  # ‖θ‖ of the layer: μ and σ of weights and biases, in float64
        layer = net.get_submodule(name)
        by_hand = math.sqrt(sum(p.double().square().sum().item() for p in layer.parameters()))
        assert figures[f"param_norm/{name}"] == pytest.approx(by_hand, rel=1e-6)


def test_eval_mode_is_the_mean_network_whatever_noise_was_drawn() -> None:
    # Dopamine's NoisyNetwork with eval_mode=True: ε = 0, y = μ_w x + μ_b.
    layer = NoisyLinear(3, 2, sigma0=0.5)
    x = torch.randn(5, 3)
    layer.eval()
    with torch.no_grad():
        mean = x @ layer.weight_mu.T + layer.bias_mu
        assert torch.equal(layer(x), mean)
        layer.resample()
        assert torch.equal(layer(x), mean)
        layer.train()
        assert not torch.allclose(layer(x), mean)


def test_probes_measure_the_mean_network_and_leave_the_noise_alone() -> None:
    net = rainbow_net()
    x = torch.randint(0, 256, (4, 4, 84, 84), dtype=torch.uint8)
    before = net.head.advantage.fc.eps_out.clone()
    first = probes.measure(net, x, ntk_batch=2, ntk_readout=net.q_values)
    assert torch.equal(net.head.advantage.fc.eps_out, before) and net.training
    for layer in (m for m in net.modules() if isinstance(m, NoisyLinear)):
        layer.resample()  # another draw: the same mean network, the same figures
    assert probes.measure(net, x, ntk_batch=2, ntk_readout=net.q_values) == first
    with torch.no_grad():
        out = net(x)
        net.head.advantage.fc.resample()
        assert not torch.equal(net(x), out)  # in train mode a new draw is a different network


def test_a_noisy_agent_explores_by_noise_and_redraws_it_to_act_and_learn() -> None:
    config = resolve(preset="classic", variant="noisy+dueling")
    spec = EnvSpec("CartPole-v1", False, (4,), np.dtype("float32"), 2, 1)
    agent = build_agent(config, spec, torch.device("cpu"))
    assert agent.epsilon(0) == agent.epsilon(10**6) == 0.0
    online, target = agent.online.head.value.fc, agent.target.head.value.fc
    drawn = online.eps_out.clone()
    agent.act(np.zeros((2, 4), np.float32), agent.epsilon(0))
    assert not torch.equal(online.eps_out, drawn)
    drawn = online.eps_out.clone()
    agent.act(np.zeros((2, 4), np.float32), 0.001, rng=np.random.default_rng(0))  # evaluation
    assert torch.equal(online.eps_out, drawn)
    before = (online.eps_out.clone(), target.eps_out.clone())
    obs = torch.randn(4, 4)
    agent.update(Batch(obs, torch.zeros(4, dtype=torch.int64), torch.ones(4), torch.ones(4), obs))
    assert not torch.equal(online.eps_out, before[0]) and not torch.equal(target.eps_out, before[1])


def test_a_noisy_checkpoint_loaded_twice_gives_the_same_q_values(tmp_path) -> None:
    # Noise buffers are not saved and a build draws them afresh: loaded twice, a checkpoint once
    # gave Q = [1.79, 1.13] and then [2.19, 1.43]. In eval mode it is its mean network.
    args = ["--env", "CartPole-v1", "--preset", "classic", "--variant", "rainbow",
            "--logdir", str(tmp_path), "--total-steps", "1200",
            "--set", "probes.enabled=false", "--set", "eval.interval=0"]  # fmt: skip
    assert train.main(args) == 0
    checkpoint = load_checkpoint(find_checkpoint(only_run(tmp_path)))
    config = configs.from_dict(checkpoint["config"])
    spec = EnvSpec("CartPole-v1", False, (4,), np.dtype("float32"), 2, 1)
    obs = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    q = []
    for seed in (1, 2):
        torch.manual_seed(seed)  # another noise draw at build time
        agent = agent_from_checkpoint(checkpoint, config, spec, device=torch.device("cpu"))
        agent.online.eval()
        q.append(agent.q_values(obs))
    assert torch.equal(q[0], q[1])
    agent.online.train()  # with its noise drawn, the same weights act otherwise
    assert not torch.equal(agent.q_values(obs), q[1])
