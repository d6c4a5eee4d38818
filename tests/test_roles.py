"""Which parameters L2, weight decay and regen act on: weights of Linear and conv layers and the
μ weights of noisy layers, chosen by the module that owns them, never by shape. Each rule is
checked by what the optimiser does, on every torso, with every option that adds parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import DQNAgent, build_agent
from configs import resolve
from envs import EnvSpec
from interventions import Interventions

CPU = torch.device("cpu")
SPECS = {
    "nature": EnvSpec("Breakout", True, (4, 84, 84), np.dtype("uint8"), 4, 1),
    "minatar": EnvSpec("MinAtar/Breakout", False, (4, 10, 10), np.dtype("float32"), 6, 1),
    "mlp": EnvSpec("CartPole-v1", False, (4,), np.dtype("float32"), 2, 1),
}
TORSO_WEIGHTS = {
    "nature": ["torso.conv1.weight", "torso.conv2.weight", "torso.conv3.weight", "torso.fc.weight"],
    "minatar": ["torso.conv1.weight", "torso.fc.weight"],
    "mlp": ["torso.fc1.weight", "torso.fc2.weight"],
}
HEAD_WEIGHTS = {
    "plain": ["head.out.weight"],
    "dueling": ["head.value.fc.weight", "head.advantage.fc.weight"],
}


def expected(torso: str, option: str) -> set[str]:
    """The weights by hand: the torso's kernels and matrices and the head's; noisy layers' μ;
    after injection the fresh head's instead of the (frozen) old one's."""
    names = TORSO_WEIGHTS[torso] + HEAD_WEIGHTS["dueling" if option == "dueling" else "plain"]
    if option == "noisy":  # every fully connected layer is noisy: the torso's and the head's
        names = [n.replace("fc.weight", "fc.weight_mu") if "fc" in n else n for n in names]
        names = [n.replace("fc1.weight", "fc1.weight_mu") for n in names]
        names = [n.replace("fc2.weight", "fc2.weight_mu") for n in names]
        names = [n.replace("out.weight", "out.weight_mu") for n in names]
    if option == "inject":
        names = [n.replace("head.", "head.fresh.") for n in names]
    return set(names)


def agent_for(torso: str, option: str, *assignments: str) -> DQNAgent:
    config = resolve(variant=option, assignments=["agent.lr=0.1", *assignments])
    agent = build_agent(config, SPECS[torso], CPU)
    if option == "inject":
        Interventions(config.interventions, agent.online, agent.optimizer, seed=1).inject()
    return agent


def zero_loss(agent: DQNAgent) -> torch.Tensor:
    """A loss of 0 that reaches every trainable parameter (their gradients exist and are 0)."""
    return sum(0.0 * p.sum() for p in agent.online.parameters() if p.requires_grad)


def names_where(agent: DQNAgent, changed) -> set[str]:
    return {n for n, p in agent.online.named_parameters() if changed(n, p)}


OPTIONS = ["dqn", "ln", "dueling", "noisy", "crelu", "inject"]
CASES = [(t, o) for t in SPECS for o in OPTIONS]


@pytest.mark.parametrize(("torso", "option"), CASES)
def test_weight_decay_shrinks_exactly_the_weights(torso: str, option: str) -> None:
    # Zero gradients: Adam's step is 0, so only AdamW's decay p <- p (1 - lr wd) moves anything.
    agent = agent_for(torso, option, "agent.weight_decay=0.5")
    before = {n: p.detach().clone() for n, p in agent.online.named_parameters()}
    agent.optimise(zero_loss(agent))
    decayed = names_where(agent, lambda n, p: not torch.equal(p, before[n]))
    assert decayed == expected(torso, option)
    for name in decayed:
        param = dict(agent.online.named_parameters())[name]
        torch.testing.assert_close(param, before[name] * (1 - 0.1 * 0.5))


@pytest.mark.parametrize(("torso", "option"), CASES)
def test_l2_penalises_exactly_the_weights(torso: str, option: str) -> None:
    agent = agent_for(torso, option, "agent.l2=0.5")
    agent.optimise(zero_loss(agent))  # the gradient is the penalty's alone: 2 λ w
    penalised = names_where(agent, lambda n, p: p.grad is not None and bool(p.grad.any()))
    assert penalised == expected(torso, option)


@pytest.mark.parametrize(("torso", "option"), CASES)
def test_regen_anchors_exactly_the_weights(torso: str, option: str) -> None:
    agent = agent_for(torso, option, "agent.regen=0.5")
    agent.anchor_new_parameters()  # an injected head is anchored where it stands
    with torch.no_grad():
        for p in agent.online.parameters():
            p.add_(0.25)  # every parameter away from where it started
    agent.optimise(zero_loss(agent))  # the gradient is regen's alone: 2 λ (θ - θ⁰)
    anchored = names_where(agent, lambda n, p: p.grad is not None and bool(p.grad.any()))
    assert anchored == expected(torso, option)
    assert set(agent.anchors) == expected(torso, option)
    for name in anchored:
        grad = dict(agent.online.named_parameters())[name].grad
        torch.testing.assert_close(grad, torch.full_like(grad, 2 * 0.5 * 0.25))
