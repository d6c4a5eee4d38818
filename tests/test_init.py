"""Weight initialisation schemes: bounds worked out by hand from each layer's fans, zero biases,
and every fresh draw (resets, injection) made with the scheme the network was built with."""

from __future__ import annotations

import math

import pytest
import torch

from configs import resolve
from interventions.resets import FreshDraws
from networks import build_network
from networks.init import fan_in_out


def nature(variant: str, *assignments: str) -> torch.nn.Module:
    config = resolve(variant=variant, assignments=list(assignments)).network
    return build_network((4, 84, 84), 6, config, categorical=variant == "c51")


# (layer, fan_in, fan_out) of the Nature CNN on 4x84x84 frames with 6 actions (scalar head).
FANS = [
    ("torso.conv1", 4 * 8 * 8, 32 * 8 * 8),
    ("torso.conv2", 32 * 4 * 4, 64 * 4 * 4),
    ("torso.conv3", 64 * 3 * 3, 64 * 3 * 3),
    ("torso.fc", 3136, 512),
    ("head.out", 512, 6),
]


def test_fans_are_counted_over_the_kernel_as_flax_and_torch_count_them() -> None:
    assert fan_in_out((32, 4, 8, 8)) == (256, 2048)
    assert fan_in_out((512, 3136)) == (3136, 512)


def assert_uniform(weight: torch.Tensor, bound: float) -> None:
    """Inside ±bound, reaching near it, with the variance of U[-b, b], b²/3."""
    assert weight.abs().max() <= bound
    assert weight.abs().max() > 0.9 * bound
    assert weight.double().var().item() == pytest.approx(bound**2 / 3, rel=0.15)


@pytest.mark.parametrize(("name", "fan_in", "fan_out"), FANS)
def test_dqn_draws_xavier_uniform_weights_and_zero_biases(name, fan_in, fan_out) -> None:
    layer = nature("dqn").get_submodule(name)
    assert_uniform(layer.weight, math.sqrt(6 / (fan_in + fan_out)))  # Glorot & Bengio 2010
    assert torch.count_nonzero(layer.bias) == 0


@pytest.mark.parametrize(("name", "fan_in", "fan_out"), FANS[:4])
def test_c51_draws_dopamines_variance_scaling(name, fan_in, fan_out) -> None:
    layer = nature("c51").get_submodule(name)
    assert_uniform(layer.weight, math.sqrt(3 * (1 / math.sqrt(3)) / fan_in))
    assert torch.count_nonzero(layer.bias) == 0


def test_torch_init_is_pytorchs_own_draw_with_its_biases() -> None:
    layer = nature("dqn", "network.init=torch").get_submodule("torso.fc")
    assert_uniform(layer.weight, 1 / math.sqrt(3136))  # kaiming_uniform(a=√5): 1/√fan_in
    assert layer.bias.abs().max() > 0  # U[±1/√fan_in], not zero


def test_fresh_draws_for_resets_keep_the_scheme_the_network_was_built_with() -> None:
    net = nature("dqn")
    fresh = FreshDraws(net).draw(seed=7)
    assert_uniform(fresh["torso.fc.weight"], math.sqrt(6 / (3136 + 512)))
    assert torch.count_nonzero(fresh["torso.fc.bias"]) == 0
    assert not torch.equal(fresh["torso.fc.weight"], net.torso.fc.weight)  # a new draw
