"""Plasticity probes on small hand-built networks with known pathologies."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

import probes
from probes.metrics import condition_number, effective_rank, srank


def mlp(
    *, width: int = 32, depth: int = 2, inputs: int = 16, outputs: int = 4, norm=None, act=nn.ReLU
):
    """Linear → [norm] → act, `depth` times, then a linear head; modules named l0, a0, …, head."""
    net = nn.Sequential()
    d = inputs
    for i in range(depth):
        net.add_module(f"l{i}", nn.Linear(d, width))
        if norm is not None:
            net.add_module(f"n{i}", norm(width))
        net.add_module(f"a{i}", act())
        d = width
    net.add_module("head", nn.Linear(d, outputs))
    return net


class SmallConv(nn.Module):
    """uint8 frames [B, 4, 12, 12] → conv(8) → ReLU → linear(16) → ReLU → 3 outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2)
        self.relu1 = nn.ReLU()
        self.fc = nn.Linear(8 * 5 * 5, 16)
        self.relu2 = nn.ReLU()
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = x.float() / 255.0
        x = self.relu1(self.conv(x)).flatten(1)
        return self.head(self.relu2(self.fc(x)))


def frames(n: int = 24) -> Tensor:
    return torch.randint(0, 256, (n, 4, 12, 12), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


def gaussian(n: int = 64, d: int = 16, seed: int = 0) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def all_finite(results: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in results.values())


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    # These networks are tiny: a second intra-op thread only adds synchronisation, and on a busy
    # CI runner it made this file 10× slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(1234)
    yield
    torch.set_num_threads(threads)


# --- pure metrics ---------------------------------------------------------------------------------


def test_srank_counts_singular_values_up_to_99_percent_of_the_sum() -> None:
    # Σσ = 10; the first two reach 9 < 9.9, the first three 9.95 ≥ 9.9.
    assert srank(torch.tensor([5.0, 4.0, 0.95, 0.05]), 0.01) == 3
    assert srank(torch.tensor([1.0, 1.0, 0.0]), 0.01) == 2
    assert srank(torch.zeros(5), 0.01) == 0


def test_effective_rank_of_k_equal_singular_values_is_k() -> None:
    assert effective_rank(torch.tensor([2.0, 2.0, 2.0, 0.0])) == pytest.approx(3.0)
    assert effective_rank(torch.tensor([7.0])) == pytest.approx(1.0)
    assert effective_rank(torch.zeros(4)) == 0.0


def test_condition_number_is_capped_for_singular_matrices() -> None:
    assert condition_number(torch.tensor([0.5, 2.0])) == pytest.approx(4.0)
    eps = torch.finfo(torch.float64).eps
    assert condition_number(torch.tensor([-1e-20, 0.0, 3.0])) == pytest.approx(1 / eps)
    assert condition_number(torch.zeros(3)) == pytest.approx(1 / eps)


def test_dormant_scores_of_an_all_zero_layer_are_zero_not_nan() -> None:
    scores = probes.dormant_scores(torch.zeros(5))
    assert torch.equal(scores, torch.zeros(5, dtype=torch.float64))
    # Mean |a| = (0 + 0.02 + 1 + 2.98) / 4 = 1: scores are the values themselves.
    mask = probes.dormant_mask(torch.tensor([0.0, 0.02, 1.0, 2.98]), 0.025)
    assert mask.tolist() == [True, True, False, False]


# --- measure: known pathologies -------------------------------------------------------------------


def test_a_layer_pushed_dead_reads_fully_dormant_and_the_network_its_unit_share() -> None:
    net = mlp(width=10, depth=2)
    with torch.no_grad():
        net.l0.bias.fill_(-100.0)  # a0: every preactivation ≈ -100, every output 0
        net.l1.bias.fill_(1.0)  # a1 sees zeros, so every unit outputs exactly 1: alive, linear
    r = probes.measure(net, gaussian())
    assert r["dormant_fraction/a0"] == 1.0 and r["dead_fraction/a0"] == 1.0
    assert r["dormant_fraction/a1"] == 0.0 and r["dead_fraction/a1"] == 0.0
    # 10 dead units out of 10 + 10.
    assert r["dormant_fraction"] == pytest.approx(0.5)
    assert r["dead_fraction"] == pytest.approx(0.5)
    assert r["linearized_fraction/a0"] == 0.0 and r["linearized_fraction/a1"] == 1.0
    assert r["linearized_fraction"] == pytest.approx(0.5)
    assert r["preact_mean/a1"] == pytest.approx(1.0) and r["preact_std/a1"] == pytest.approx(0.0)


def test_dormancy_is_read_at_the_probe_tau_and_at_redos_tau_when_asked() -> None:
    # One input of 1 through weights [0, 0.05, 1, 2.95]: mean |a| = 1, so the ReDo scores are
    # the weights themselves; 1 unit scores <= 0.025, 2 score <= 0.1 (ReDo's τ for DQN).
    net = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.0], [0.05], [1.0], [2.95]]))
        net[0].bias.zero_()
    x = torch.ones(3, 1)
    r = probes.measure(net, x, tau=0.025, redo_tau=0.1, ntk_batch=0)
    assert (r["dormant_fraction"], r["redo_dormant_fraction"], r["dead_fraction"]) == (
        0.25,
        0.5,
        0.25,
    )
    assert probes.measure(net, x, tau=0.1, ntk_batch=0)["dormant_fraction"] == 0.5
    assert "redo_dormant_fraction" not in probes.measure(net, x, ntk_batch=0)


def test_unequal_layers_pool_units_for_the_whole_network_figure() -> None:
    net = nn.Sequential(nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 30), nn.ReLU(), nn.Linear(30, 2))
    with torch.no_grad():
        net[0].bias.fill_(-100.0)
        net[2].bias.fill_(1.0)
    r = probes.measure(net, gaussian())
    assert r["dead_fraction/1"] == 1.0 and r["dead_fraction/3"] == 0.0
    assert r["dead_fraction"] == pytest.approx(6 / 36)


def test_a_layer_pushed_positive_reads_fully_linearized() -> None:
    net = mlp(width=12)
    with torch.no_grad():
        net.l1.bias.fill_(100.0)
    r = probes.measure(net, gaussian())
    assert r["linearized_fraction/a1"] == 1.0
    assert r["dormant_fraction/a1"] == 0.0


def test_an_in_place_relu_still_reports_its_preactivation() -> None:
    net = mlp(width=12, act=lambda: nn.ReLU(inplace=True))
    with torch.no_grad():
        net.l0.bias.fill_(-100.0)
    r = probes.measure(net, gaussian())
    assert r["preact_mean/a0"] < -90.0  # the pre-hook saw z before ReLU overwrote it with 0
    assert r["dead_fraction/a0"] == 1.0


def test_half_the_channels_of_a_conv_layer_killed_reads_one_half_on_uint8_frames() -> None:
    net = SmallConv()
    with torch.no_grad():
        net.conv.weight.abs_()  # pixels are ≥ 0, so channels 4..7 are positive on every frame
        net.conv.bias[4:] = 0.1
        net.conv.bias[:4] = -100.0
    r = probes.measure(net, frames())
    assert r["dormant_fraction/relu1"] == 0.5
    assert r["dead_fraction/relu1"] == 0.5
    assert {"feature_rank", "ntk_condition", "param_norm/conv"} <= r.keys()
    assert all_finite(r)


def test_scaling_every_parameter_by_three_triples_every_param_norm() -> None:
    net = SmallConv()
    before = probes.measure(net, frames(), ntk_batch=0)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    after = probes.measure(net, frames(), ntk_batch=0)
    norm_keys = [k for k in before if k.startswith("param_norm")]
    assert set(norm_keys) == {"param_norm", "param_norm/conv", "param_norm/fc", "param_norm/head"}
    for key in norm_keys:
        assert after[key] == pytest.approx(3.0 * before[key], rel=1e-6)


def test_features_with_r_live_units_have_rank_at_most_r() -> None:
    net = mlp(width=32)
    with torch.no_grad():
        net.l1.bias[3:] = -100.0  # only units 0, 1, 2 of the penultimate layer can fire
    r = probes.measure(net, gaussian(128))
    assert 1 <= r["feature_rank"] <= 3
    assert 1.0 <= r["effective_rank"] <= 3.0
    assert r["dead_fraction/a1"] >= 29 / 32
    fresh = probes.measure(mlp(width=32), gaussian(128))
    assert fresh["feature_rank"] > 10


def test_feature_norm_is_the_mean_norm_of_the_last_nonlinearity_output() -> None:
    net = mlp(width=8)
    with torch.no_grad():
        net.l1.weight.zero_()
        net.l1.bias.fill_(0.5)  # φ(x) = 0.5·1 for every x: ‖φ‖ = 0.5·√8, rank 1
    r = probes.measure(net, gaussian())
    assert r["feature_norm"] == pytest.approx(0.5 * math.sqrt(8))
    assert r["feature_rank"] == 1 and r["effective_rank"] == pytest.approx(1.0)


def test_collapsing_every_input_to_one_point_blows_up_the_ntk_condition() -> None:
    x = gaussian(32)
    fresh = mlp(width=64)
    collapsed = mlp(width=64)
    with torch.no_grad():
        collapsed.l0.weight.zero_()
    r_fresh, r_collapsed = probes.measure(fresh, x), probes.measure(collapsed, x)
    assert r_fresh["ntk_rank"] == 32 and math.isfinite(r_fresh["ntk_condition"])
    assert r_fresh["ntk_condition"] == pytest.approx(
        r_fresh["ntk_lambda_max"] / r_fresh["ntk_lambda_min"], rel=1e-9
    )
    # Only ∂f/∂W₀ = δ xᵀ still depends on x: the Gram is a constant plus a rank-16 term. A
    # singular Gram says so by its rank and λ_min, with no condition number (it would read the
    # round-off, ~1/ε, as a measurement).
    assert r_collapsed["ntk_rank"] <= 17
    assert "ntk_condition" not in r_collapsed
    assert r_collapsed["ntk_lambda_min"] <= 1e-9 * r_collapsed["ntk_lambda_max"]


def test_ntk_falls_back_to_per_example_jacobians_when_vmap_cannot_batch() -> None:
    class ItemNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = mlp(width=16)

        def forward(self, x: Tensor) -> Tensor:
            if x.abs().sum().item() >= 0:  # data-dependent control flow: vmap refuses it
                return self.body(x)
            return -self.body(x)

    net = ItemNet()
    x = gaussian(8)
    r = probes.measure(net, x)
    expected = probes.measure(net.body, x)
    assert r["ntk_condition"] == pytest.approx(expected["ntk_condition"], rel=1e-6)
    assert r["ntk_rank"] == expected["ntk_rank"]


# --- measure: any module --------------------------------------------------------------------------


def test_layernorm_before_relu_is_measured_after_the_norm() -> None:
    net = mlp(width=24, norm=nn.LayerNorm)
    r = probes.measure(net, gaussian())
    # Each sample's normalised preactivation has mean 0 and variance 1 over its 24 features.
    for layer in ("a0", "a1"):
        assert r[f"preact_mean/{layer}"] == pytest.approx(0.0, abs=1e-5)
        assert r[f"preact_std/{layer}"] == pytest.approx(1.0, abs=1e-3)
    assert "param_norm/n0" in r and all_finite(r)


@pytest.mark.parametrize("act", [nn.GELU, nn.Tanh, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.PReLU])
def test_smooth_and_leaky_nonlinearities_are_found(act: type[nn.Module]) -> None:
    net = mlp(width=16, act=act)
    x = gaussian()
    r = probes.measure(net, x)
    assert {"dormant_fraction/a0", "preact_std/a1", "linearized_fraction/a1"} <= r.keys()
    assert all_finite(r)
    # The first nonlinearity's input is the first layer's output: its moments, in float64.
    z = net.l0(x).detach().double()
    assert r["preact_mean/a0"] == pytest.approx(z.mean().item(), rel=1e-5, abs=1e-7)
    assert r["preact_std/a0"] == pytest.approx(z.std(unbiased=False).item(), rel=1e-4)
    # Linearized: units whose preactivation is > 0 on at least 99% of the inputs.
    linear = ((z > 0).double().mean(0) >= 0.99).double().mean().item()
    assert r["linearized_fraction/a0"] == pytest.approx(linear)


def test_a_saturated_tanh_is_not_dead() -> None:
    net = mlp(width=16, act=nn.Tanh)
    with torch.no_grad():
        net.l0.bias.fill_(-100.0)  # tanh ≈ −1: |a| = 1 everywhere, preactivation never positive
    r = probes.measure(net, gaussian())
    assert r["dead_fraction/a0"] == 0.0 and r["linearized_fraction/a0"] == 0.0


def test_a_reused_nonlinearity_is_keyed_per_call() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l0, self.l1, self.head = nn.Linear(16, 8), nn.Linear(8, 5), nn.Linear(5, 2)
            self.act = nn.ReLU()

        def forward(self, x: Tensor) -> Tensor:
            return self.head(self.act(self.l1(self.act(self.l0(x)))))

    net = Shared()
    with torch.no_grad():
        net.l1.bias.fill_(-100.0)
    r = probes.measure(net, gaussian())
    assert r["dead_fraction/act#1"] == 1.0  # the second call, 5 units, all dead
    assert r["dead_fraction"] == pytest.approx((r["dead_fraction/act"] * 8 + 5) / 13)
    assert r["feature_rank"] == 0  # the penultimate features are the second call's


def test_an_all_dead_network_gives_no_nan() -> None:
    net = mlp(width=16)
    with torch.no_grad():
        net.l0.bias.fill_(-100.0)
        net.l1.bias.fill_(-100.0)
    r = probes.measure(net, gaussian())
    assert all_finite(r)
    assert r["dormant_fraction"] == 1.0 and r["dead_fraction"] == 1.0
    assert r["feature_norm"] == 0.0 and r["feature_rank"] == 0 and r["effective_rank"] == 0.0


# --- the model is left exactly as found -----------------------------------------------------------


class Mixed(nn.Module):
    """Mixed train/eval flags, BatchNorm running statistics, dropout and pre-existing grads."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2))
        self.head = nn.Sequential(nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def snapshot(net: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in net.state_dict().items()},
        "modes": [m.training for m in net.modules()],
        "grads": [None if p.grad is None else p.grad.clone() for p in net.parameters()],
    }


def assert_unchanged(net: nn.Module, before: dict) -> None:
    after = snapshot(net)
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert before["modes"] == after["modes"]
    for g0, g1 in zip(before["grads"], after["grads"], strict=True):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)
    for module in net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_measure_and_fit_probe_leave_the_model_as_found(grad_enabled: bool) -> None:
    net = Mixed()
    net.head.eval()  # body training, head eval: one `train(flag)` could not restore both
    net.body[0].weight.grad = torch.ones_like(net.body[0].weight)
    before = snapshot(net)
    rng = torch.get_rng_state()
    with torch.set_grad_enabled(grad_enabled):
        probes.measure(net, gaussian())
        probes.probe_fit_loss(net, gaussian(), steps=5)
        assert torch.is_grad_enabled() == grad_enabled
    assert_unchanged(net, before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_model_without_nonlinearity_modules_gets_param_and_ntk_keys() -> None:
    r = probes.measure(nn.Linear(16, 3), gaussian())
    ntk = {"ntk_rank", "ntk_lambda_max", "ntk_lambda_min"}
    assert set(r) == {"param_norm", "param_norm/root", *ntk}
    # K_ij = x_i·x_j + 1 on 32 inputs of 16 features: rank 17 < 32, singular, so no condition.
    assert r["ntk_rank"] == 17


# --- probe_fit_loss -------------------------------------------------------------------------------


def test_fit_probe_is_deterministic_and_near_one_for_a_fresh_network() -> None:
    x = gaussian(256)
    ratios = [probes.probe_fit_loss(mlp(width=64), x, seed=s) for s in (3, 4)]
    assert probes.probe_fit_loss(_rebuild(64, 11), x, seed=3) == probes.probe_fit_loss(
        _rebuild(64, 11), x, seed=3
    )
    for ratio in ratios:
        assert 0.5 <= ratio <= 2.0


def _rebuild(width: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return mlp(width=width)


def pretrain(net: nn.Module, x: Tensor, *, weight_decay: float, seed: int) -> nn.Module:
    """400 Adam(W) steps regressing random targets offset by +100 (Lyle et al. 2024, §5)."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randn(x.shape[0], 1, generator=g) + 100.0
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=weight_decay)
    for _ in range(400):
        idx = torch.randint(x.shape[0], (64,), generator=g)
        loss = (net(x[idx]) - targets[idx]).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net


def test_large_targets_cost_plasticity_and_layernorm_with_weight_decay_keeps_it() -> None:
    # Observed over seeds 0–5: plain 3000–4700, LN + wd 12–42 (fresh ≈ 1).
    x = gaussian(512)
    torch.manual_seed(100)
    plain = pretrain(mlp(width=128, outputs=1), x, weight_decay=0.0, seed=0)
    torch.manual_seed(100)
    ln_wd = pretrain(mlp(width=128, outputs=1, norm=nn.LayerNorm), x, weight_decay=0.1, seed=0)
    plain_ratio = probes.probe_fit_loss(plain, x)
    ln_wd_ratio = probes.probe_fit_loss(ln_wd, x)
    assert plain_ratio > 100.0
    assert ln_wd_ratio < plain_ratio / 10.0


def test_ntk_readout_takes_the_kernel_of_mapped_outputs():
    # f(x) = W x, W [2, 3], no bias: output o's Jacobian is x in row o of W and zero elsewhere, so
    # the trace NTK over both outputs is 2·⟨x_i, x_j⟩, and over the first output alone ⟨x_i, x_j⟩.
    from probes.observe import ntk_gram

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    x = torch.randn(4, 3)
    xx = x.double() @ x.double().T
    torch.testing.assert_close(ntk_gram(model, x, 2), 2 * xx)
    torch.testing.assert_close(ntk_gram(model, x, 1, readout=lambda out: out[:, :1]), xx)


class TwiceApplied(nn.Module):
    """One Linear applied twice, which the factored NTK must leave to per-example Jacobians."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(5, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


def reference_ntk(forward, params: list[Tensor], inputs: Tensor, readout=None) -> Tensor:
    """K_ij = Σ_o ⟨∂f_o(x_i)/∂θ, ∂f_o(x_j)/∂θ⟩ for a float64 `forward` with parameters `params`,
    one backward pass per example and output: the definition, without torch.func or factoring."""
    rows = []  # per example, [O, P] gradients
    for x in inputs.double():
        out = forward(x.unsqueeze(0))
        values = (out if readout is None else readout(out)).reshape(-1)
        grads = [torch.autograd.grad(v, params, retain_graph=True) for v in values]
        rows.append(torch.stack([torch.cat([g.reshape(-1) for g in gs]) for gs in grads]))
    jacobian = torch.stack(rows)  # [n, O, P]
    return torch.einsum("iop,jop->ij", jacobian, jacobian)


def test_ntk_gram_matches_the_definition_in_float64():
    # A conv torso with LayerNorm and a categorical dueling head read out as Q-values: the
    # convolutions and LayerNorm go through Jacobians, the fully connected layers are factored.
    import copy

    import configs
    from networks import build_network
    from probes.observe import ntk_gram

    torch.manual_seed(0)
    config = configs.resolve(variant="ln+c51", assignments=["network.dueling=true"])
    net = build_network((4, 36, 36), 3, config.network, categorical=True).eval()
    frames = torch.rand(5, 4, 36, 36)
    ref = copy.deepcopy(net).double()
    expected = reference_ntk(
        lambda x: ref.head(ref.torso(x)), [*ref.parameters()], frames, ref.q_values
    )
    torch.testing.assert_close(ntk_gram(net, frames, 3, net.q_values), expected, rtol=1e-4, atol=0)
    shared = TwiceApplied()  # its `inner` goes through Jacobians, `out` is factored
    shared.out.bias.requires_grad_(False)  # a frozen parameter is not part of θ
    x = torch.randn(6, 5)
    ref = copy.deepcopy(shared).double()
    expected = reference_ntk(ref, [p for p in ref.parameters() if p.requires_grad], x)
    torch.testing.assert_close(ntk_gram(shared, x, 2), expected, rtol=1e-5, atol=0)
    # An in-place ReLU after a factored layer; a weight tied between two layers.
    in_place = nn.Sequential(nn.Linear(5, 5), nn.ReLU(inplace=True), nn.Linear(5, 2))
    tied = nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5), nn.Linear(5, 2))
    tied[2].weight = tied[0].weight
    for model in (in_place, tied):
        ref = copy.deepcopy(model).double()
        expected = reference_ntk(ref, [*ref.parameters()], x)
        torch.testing.assert_close(ntk_gram(model, x, 2), expected, rtol=1e-5, atol=0)
