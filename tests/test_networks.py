"""Torsos and heads: Nature CNN shapes, the LayerNorm option in the module tree, head outputs."""

from __future__ import annotations

import torch
from torch import nn

from configs import resolve
from networks import CategoricalHead, build_network

NETWORK = resolve().network


def modules_in_order(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not list(m.children())]


def test_nature_cnn_has_mnih_2015_shapes_and_scales_frames():
    net = build_network((4, 84, 84), 6, NETWORK, categorical=False)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)),
        (64, (4, 4), (2, 2)),
        (64, (3, 3), (1, 1)),
    ]
    assert net.torso.fc.in_features == 64 * 7 * 7 == 3136 and net.torso.fc.out_features == 512
    frames = torch.full((2, 4, 84, 84), 255, dtype=torch.uint8)
    # uint8 255 must be read as 1.0: compare with the float input of ones.
    torch.testing.assert_close(net(frames), net(torch.ones(2, 4, 84, 84)))
    assert net(frames).shape == (2, 6)


def test_channels_last_keeps_kernels_and_scaled_frames_nhwc_with_the_same_values():
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    net = build_network((4, 84, 84), 6, NETWORK, categorical=False)
    nchw = net.scale(frames)
    assert torch.equal(nchw, frames.float() / 255.0) and nchw.is_contiguous()
    net.use_channels_last()
    nhwc = net.scale(frames)
    assert torch.equal(nhwc, frames.float() / 255.0)  # the same numbers, another layout
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    assert net.torso.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    mlp = build_network((8,), 2, NETWORK, categorical=False).use_channels_last()
    assert mlp.input_format == torch.contiguous_format  # no conv layer: nothing to change


def test_ln_puts_a_layernorm_before_every_hidden_relu():
    for shape in [(4, 84, 84), (8,)]:
        net = build_network(shape, 3, resolve(variant="ln").network, categorical=True)
        layers = modules_in_order(net)
        relus = [i for i, m in enumerate(layers) if isinstance(m, nn.ReLU)]
        assert len(relus) == (4 if len(shape) == 3 else 2)
        assert all(isinstance(layers[i - 1], nn.LayerNorm) for i in relus)
        assert all(m.elementwise_affine for m in layers if isinstance(m, nn.LayerNorm))
    conv_norms = [m for m in net.modules() if isinstance(m, nn.LayerNorm)]
    assert conv_norms[0].normalized_shape == (120,)  # the MLP's first width


def test_conv_layernorm_normalises_each_sample_over_channels_and_positions():
    net = build_network((4, 84, 84), 6, resolve(variant="ln").network, categorical=False)
    assert net.torso.norm_conv1.normalized_shape == (32, 20, 20)
    out = net.torso.norm_conv1(net.torso.conv1(torch.rand(3, 4, 84, 84)))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)


def test_without_ln_there_is_no_normalisation_layer():
    net = build_network((4, 84, 84), 6, NETWORK, categorical=False)
    assert not any(isinstance(m, nn.LayerNorm) for m in net.modules())


def test_categorical_head_gives_logits_per_action_and_expected_q():
    head = CategoricalHead(2, num_actions=1, support=torch.tensor([-1.0, 0.0, 1.0]))
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.bias.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    logits = head(torch.zeros(1, 2))
    assert logits.shape == (1, 1, 3)
    # Q = 0.2 * -1 + 0.3 * 0 + 0.5 * 1 = 0.3
    torch.testing.assert_close(head.q_values(logits), torch.tensor([[0.3]]))
