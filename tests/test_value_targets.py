"""Value-target math against hand arithmetic and slow float64 loop references.

The references below use Python floats, loops and `math.erf` only; they never call the code under
test, so a shared mistake would have to be made twice, in two different styles.
"""

from __future__ import annotations

import math

import pytest
import torch

from agents.value_targets import (
    categorical_projection,
    hl_gauss,
    hl_gauss_sigma,
    scalar_expectation,
    signed_hyperbolic,
    signed_hyperbolic_inverse,
    two_hot,
)

SMALL = [-1.0, 0.0, 1.0, 2.0]  # Δ = 1, four atoms: easy to work out by hand


def c51_support(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The classic C51 support: 51 atoms on [-10, 10], Δ = 0.4, atom 25 at 0."""
    return torch.linspace(-10.0, 10.0, 51, dtype=dtype)


def t64(xs) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Independent float64 references (loops, Python floats, math.erf)
# ---------------------------------------------------------------------------------------------


def ref_two_hot(v: float, z: list[float]) -> list[float]:
    k = len(z)
    v = min(max(v, z[0]), z[-1])
    out = [0.0] * k
    for i in range(k - 1):
        if z[i] <= v <= z[i + 1]:
            out[i] = (z[i + 1] - v) / (z[i + 1] - z[i])
            out[i + 1] = (v - z[i]) / (z[i + 1] - z[i])
            return out
    raise AssertionError("unreachable: v was clipped into the support")


def ref_phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def ref_hl_gauss(v: float, z: list[float], sigma: float) -> list[float]:
    k = len(z)
    delta = (z[-1] - z[0]) / (k - 1)
    v = min(max(v, z[0]), z[-1])
    edges = [zi - delta / 2 for zi in z] + [z[-1] + delta / 2]
    norm = ref_phi((edges[k] - v) / sigma) - ref_phi((edges[0] - v) / sigma)
    return [
        (ref_phi((edges[i + 1] - v) / sigma) - ref_phi((edges[i] - v) / sigma)) / norm
        for i in range(k)
    ]


def ref_c51(p: list[float], r: float, d: float, z: list[float]) -> list[float]:
    """Bellemare et al. 2017, Algorithm 1, with the exact-atom fix (l == u keeps the mass)."""
    k = len(z)
    v_min, v_max = z[0], z[-1]
    delta = (v_max - v_min) / (k - 1)
    m = [0.0] * k
    for j in range(k):
        tz = min(max(r + d * z[j], v_min), v_max)
        b = min(max((tz - v_min) / delta, 0.0), k - 1.0)
        lo, up = math.floor(b), math.ceil(b)
        if lo == up:
            m[lo] += p[j]
        else:
            m[lo] += p[j] * (up - b)
            m[up] += p[j] * (b - lo)
    return m


# ---------------------------------------------------------------------------------------------
# two_hot
# ---------------------------------------------------------------------------------------------


def test_two_hot_hand_values():
    # v = 0.25 lies in [z_1, z_2] = [0, 1]: z_1 gets (1 - 0.25)/1 = .75, z_2 gets (0.25 - 0)/1 = .25
    # v = -0.5 lies in [-1, 0]: z_0 gets (0 - -0.5) = .5, z_1 gets (-0.5 - -1) = .5
    # v = 1.9 lies in [1, 2]: z_2 gets (2 - 1.9) = .1, z_3 gets (1.9 - 1) = .9
    out = two_hot(t64([0.25, -0.5, 1.9]), t64(SMALL))
    expected = t64([[0, 0.75, 0.25, 0], [0.5, 0.5, 0, 0], [0, 0, 0.1, 0.9]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_two_hot_value_on_an_atom_puts_all_mass_there_including_both_ends():
    z = c51_support()
    torch.testing.assert_close(
        two_hot(z, z), torch.eye(51, dtype=torch.float64), rtol=0, atol=1e-12
    )
    z32 = c51_support(torch.float32)
    torch.testing.assert_close(two_hot(z32, z32), torch.eye(51), rtol=0, atol=1e-6)


def test_two_hot_far_outside_the_support_is_one_hot_at_the_ends_without_nan():
    for dtype in (torch.float32, torch.float64):
        z = torch.tensor(SMALL, dtype=dtype)
        out = two_hot(torch.tensor([1e9, -1e9, 2.5, -7.0], dtype=dtype), z)
        assert not out.isnan().any()
        # Everything above z_3 = 2 clips to 2, everything below z_0 = -1 clips to -1.
        expected = torch.tensor(
            [[0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]], dtype=dtype
        )
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_two_hot_rows_sum_to_one_and_expectation_is_the_clipped_value():
    gen = torch.Generator().manual_seed(0)
    z = c51_support()
    v = torch.rand(2000, generator=gen, dtype=torch.float64) * 30 - 15  # a third outside [-10, 10]
    out = two_hot(v, z)
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(2000, dtype=torch.float64))
    torch.testing.assert_close((out * z).sum(-1), v.clamp(-10, 10), rtol=0, atol=1e-12)


def test_two_hot_matches_loop_reference():
    gen = torch.Generator().manual_seed(1)
    z = c51_support()
    v = torch.cat([torch.randn(300, generator=gen, dtype=torch.float64) * 8, z[::7]])
    expected = t64([ref_two_hot(x, z.tolist()) for x in v.tolist()])
    torch.testing.assert_close(two_hot(v, z), expected, rtol=0, atol=1e-12)


def test_two_hot_keeps_leading_batch_shape():
    v = t64([[0.25, 1.9], [3.0, -1.0]])
    out = two_hot(v, t64(SMALL))
    assert out.shape == (2, 2, 4)
    torch.testing.assert_close(out[0, 0], t64([0, 0.75, 0.25, 0]))  # hand value from above


# ---------------------------------------------------------------------------------------------
# hl_gauss
# ---------------------------------------------------------------------------------------------


def test_hl_gauss_sigma_default_is_three_quarters_of_a_bin():
    # Δ = 20 / 50 = 0.4, σ = 0.75 · 0.4 = 0.3
    assert hl_gauss_sigma(c51_support()) == pytest.approx(0.3, rel=1e-12)
    assert hl_gauss_sigma(t64(SMALL), sigma_ratio=0.5) == pytest.approx(0.5, rel=1e-12)


def test_hl_gauss_hand_value_symmetric_three_bins():
    # Support [-1, 0, 1], Δ = 1, edges [-1.5, -0.5, 0.5, 1.5], v = 0, σ = 0.5: the edges sit at
    # ±1σ and ±3σ. Φ(1) = 0.8413447, Φ(3) = 0.9986501.
    # normaliser = Φ(3) - Φ(-3) = 0.9973002; middle = Φ(1) - Φ(-1) = 0.6826895 -> 0.6845376;
    # each side = (Φ(-1) - Φ(-3)) / 0.9973002 = (0.1586553 - 0.0013499) / 0.9973002 = 0.1577312.
    out = hl_gauss(t64([0.0]), t64([-1.0, 0.0, 1.0]), sigma=0.5)
    torch.testing.assert_close(out, t64([[0.1577312, 0.6845376, 0.1577312]]), rtol=0, atol=1e-7)


def test_hl_gauss_matches_erf_loop_reference():
    gen = torch.Generator().manual_seed(2)
    z = c51_support()
    v = torch.cat([torch.randn(200, generator=gen, dtype=torch.float64) * 8, z[::5], t64([1e9])])
    for sigma in (0.3, 0.05, 2.0):
        expected = t64([ref_hl_gauss(x, z.tolist(), sigma) for x in v.tolist()])
        torch.testing.assert_close(hl_gauss(v, z, sigma), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hl_gauss_rows_sum_to_one(dtype):
    gen = torch.Generator().manual_seed(3)
    z = c51_support(dtype)
    v = torch.cat([torch.randn(1000, generator=gen, dtype=dtype) * 12, torch.tensor([1e9, -1e9])])
    out = hl_gauss(v.to(dtype), z, hl_gauss_sigma(z))
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(1002, dtype=dtype))


def test_hl_gauss_expectation_is_the_value_well_inside_the_support():
    # Two errors, both bounded: (1) discretisation - placing each bin's Gaussian mass at its
    # centre biases the mean by at most Δ/π · exp(-2π²σ²/Δ²) (Poisson summation of the rounding
    # sawtooth); at σ = 0.75Δ that is 0.318 · exp(-11.10) · Δ = 4.7e-6 Δ = 1.9e-6 for Δ = 0.4.
    # (2) truncation at the ends: at ≥ 6σ from both ends the clipped tail is < 1e-9 of the mass.
    # So for v in [-10 + 6σ, 10 - 6σ] = [-8.2, 8.2] we allow 1e-5 · Δ = 4e-6.
    z = c51_support()
    sigma = hl_gauss_sigma(z)
    v = torch.linspace(-8.2, 8.2, 1001, dtype=torch.float64)
    err = (scalar_expectation(hl_gauss(v, z, sigma), z) - v).abs().max().item()
    assert err < 1e-5 * 0.4
    assert err > 1e-8  # the bias is real: it is the discretisation, not an exact identity


def test_hl_gauss_far_outside_the_support_equals_the_end_atom_encoding_without_nan():
    z = c51_support()
    for sigma in (0.3, 1e-4, 50.0):  # default, a near-delta and a very wide Gaussian
        out = hl_gauss(t64([1e9, -1e9]), z, sigma)
        assert not out.isnan().any()
        torch.testing.assert_close(out, hl_gauss(t64([10.0, -10.0]), z, sigma), rtol=0, atol=0)
        torch.testing.assert_close(out.sum(-1), torch.ones(2, dtype=torch.float64))
    # σ ≪ Δ: the whole mass is in the end bins.
    torch.testing.assert_close(
        hl_gauss(t64([1e9]), z, 1e-4)[0, -1], torch.tensor(1.0, dtype=torch.float64)
    )


def test_hl_gauss_rejects_non_positive_sigma():
    with pytest.raises(ValueError, match="sigma"):
        hl_gauss(t64([0.0]), t64(SMALL), sigma=0.0)


# ---------------------------------------------------------------------------------------------
# categorical_projection
# ---------------------------------------------------------------------------------------------


def test_categorical_projection_hand_values():
    # support [-1, 0, 1, 2], p = [.1, .2, .3, .4], r = 0.5, d = 0.5:
    # Tz = 0.5 + 0.5 · [-1, 0, 1, 2] = [0, 0.5, 1, 1.5]
    # .1 at 0 (exactly atom 1) -> atom 1 gets .1 (the l == u case)
    # .2 at 0.5 -> .1 to atom 1, .1 to atom 2
    # .3 at 1 (exactly atom 2) -> atom 2 gets .3
    # .4 at 1.5 -> .2 to atom 2, .2 to atom 3
    # total: [0, .2, .6, .2]
    out = categorical_projection(t64([[0.1, 0.2, 0.3, 0.4]]), t64([0.5]), t64([0.5]), t64(SMALL))
    torch.testing.assert_close(out, t64([[0, 0.2, 0.6, 0.2]]), rtol=0, atol=1e-12)


def test_categorical_projection_matches_algorithm_1_loop_reference():
    gen = torch.Generator().manual_seed(4)
    z = c51_support()
    b = 256
    p = torch.rand(b, 51, generator=gen, dtype=torch.float64).softmax(-1)
    r = torch.randn(b, generator=gen, dtype=torch.float64) * 5
    r[:8] = t64([1e9, -1e9, 0.4, -0.4, 10.0, -10.0, 0.0, 20.0])
    d = torch.rand(b, generator=gen, dtype=torch.float64)
    d[::3] = 0.0  # terminal
    d[1::3] = 0.99
    d[:8] = t64([0.99, 0.99, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    rows = zip(p.tolist(), r.tolist(), d.tolist(), strict=True)
    expected = t64([ref_c51(pi, ri, di, z.tolist()) for pi, ri, di in rows])
    torch.testing.assert_close(categorical_projection(p, r, d, z), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_terminal_transition_with_reward_zero_projects_all_mass_onto_the_atom_at_zero(dtype):
    z = c51_support(dtype)
    p = torch.rand(4, 51, dtype=dtype).softmax(-1)
    out = categorical_projection(p, torch.zeros(4, dtype=dtype), torch.zeros(4, dtype=dtype), z)
    expected = torch.zeros(4, 51, dtype=dtype)
    expected[:, 25] = 1.0  # atom 25 = -10 + 25 · 0.4 = 0
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discount_one_reward_zero_is_the_identity(dtype):
    z = c51_support(dtype)
    p = torch.rand(16, 51, dtype=dtype).softmax(-1)
    out = categorical_projection(p, torch.zeros(16, dtype=dtype), torch.ones(16, dtype=dtype), z)
    torch.testing.assert_close(out, p, rtol=0, atol=1e-6)


def test_reward_of_one_bin_shifts_mass_one_atom_and_piles_clipped_mass_on_the_end_atom():
    # support [-1, 0, 1, 2], p = [.1, .2, .3, .4], d = 1.
    # r = +1: atoms move to [0, 1, 2, 3]; 3 clips to 2 -> [0, .1, .2, .3 + .4] = [0, .1, .2, .7]
    # r = -1: atoms move to [-2, -1, 0, 1]; -2 clips to -1 -> [.1 + .2, .3, .4, 0] = [.3, .3, .4, 0]
    p = t64([[0.1, 0.2, 0.3, 0.4]] * 2)
    out = categorical_projection(p, t64([1.0, -1.0]), t64([1.0, 1.0]), t64(SMALL))
    torch.testing.assert_close(
        out, t64([[0, 0.1, 0.2, 0.7], [0.3, 0.3, 0.4, 0]]), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reward_of_one_bin_shifts_the_c51_support_by_one_atom(dtype):
    # r = Δ = 0.4 lands r + z_j on z_{j+1} (within float error in float32): out[j+1] = p[j],
    # and the top atom collects p[49] + p[50].
    z = c51_support(dtype)
    p = torch.rand(8, 51, dtype=dtype).softmax(-1)
    out = categorical_projection(
        p, torch.full((8,), 0.4, dtype=dtype), torch.ones(8, dtype=dtype), z
    )
    expected = torch.cat([torch.zeros(8, 1, dtype=dtype), p[:, :-2], p[:, -2:].sum(-1, True)], -1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_projection_conserves_mass_for_random_inputs_including_huge_rewards(dtype):
    gen = torch.Generator().manual_seed(5)
    z = c51_support(dtype)
    b = 512
    p = torch.rand(b, 51, generator=gen).softmax(-1).to(dtype)
    r = torch.randn(b, generator=gen).to(dtype) * 10 ** torch.randint(0, 10, (b,), generator=gen)
    d = torch.rand(b, generator=gen).to(dtype)
    out = categorical_projection(p, r, d, z)
    assert not out.isnan().any()
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(b, dtype=dtype))
    # r = ±1e9 puts everything on the end atoms.
    ends = categorical_projection(p[:2], torch.tensor([1e9, -1e9], dtype=dtype), d[:2], z)
    torch.testing.assert_close(ends[0, -1], torch.tensor(1.0, dtype=dtype))
    torch.testing.assert_close(ends[1, 0], torch.tensor(1.0, dtype=dtype))


def test_float32_landings_a_rounding_error_either_side_of_an_atom_keep_all_mass():
    # Terminal transitions (d = 0) with r one float32 ulp above or below each atom: b is then
    # 24.99999 or 25.000002 and so on, including just past both ends. Every row must put
    # (essentially) all its mass on that atom - none dropped, none out of range.
    z = c51_support(torch.float32)
    p = torch.full((51, 51), 1 / 51)
    for direction in (float("inf"), float("-inf")):
        r = torch.nextafter(z, torch.full_like(z, direction))
        out = categorical_projection(p, r, torch.zeros(51), z)
        torch.testing.assert_close(out.sum(-1), torch.ones(51), rtol=0, atol=1e-6)
        torch.testing.assert_close(out, torch.eye(51), rtol=0, atol=1e-5)


def test_projection_keeps_leading_batch_shape():
    # [2, 3, K] distributions (e.g. per action) with [2, 3] rewards and discounts.
    z = t64(SMALL)
    p = t64([0.1, 0.2, 0.3, 0.4]).expand(2, 3, 4)
    out = categorical_projection(p, torch.ones(2, 3, dtype=torch.float64), torch.ones(2, 3), z)
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(out[1, 2], t64([0, 0.1, 0.2, 0.7]))  # the r = +1 hand value


# ---------------------------------------------------------------------------------------------
# signed hyperbolic rescaling
# ---------------------------------------------------------------------------------------------


def test_signed_hyperbolic_hand_values():
    # h(3) = (√4 − 1) + 0.001 · 3 = 1.003; h(8) = (√9 − 1) + 0.008 = 2.008; h is odd; h(0) = 0.
    x = t64([0.0, 3.0, -3.0, 8.0])
    torch.testing.assert_close(signed_hyperbolic(x), t64([0.0, 1.003, -1.003, 2.008]))
    # h⁻¹(1.003): s = √(1 + 0.004 · (1.003 + 1 + 0.001)) = √1.008016 = 1.004,
    # ((1.004 − 1) / 0.002)² − 1 = 2² − 1 = 3.
    torch.testing.assert_close(
        signed_hyperbolic_inverse(t64([1.003, -1.003, 0.0])), t64([3, -3, 0])
    )
    # ε = 0: h(3) = 1 and h⁻¹(1) = (1 + 1)² − 1 = 3.
    assert signed_hyperbolic(t64([3.0]), eps=0.0).item() == pytest.approx(1.0, rel=1e-15)
    assert signed_hyperbolic_inverse(t64([1.0]), eps=0.0).item() == pytest.approx(3.0, rel=1e-15)


def test_signed_hyperbolic_inverse_matches_the_textbook_closed_form():
    # h⁻¹(y) = sign(y)·(((√(1 + 4ε(|y| + 1 + ε)) − 1)/(2ε))² − 1), evaluated with math in float64.
    eps = 1e-3
    ys = [-5e3, -37.0, -1.5, -0.2, 0.2, 1.5, 37.0, 5e3]
    expected = [
        math.copysign(((math.sqrt(1 + 4 * eps * (abs(y) + 1 + eps)) - 1) / (2 * eps)) ** 2 - 1, y)
        for y in ys
    ]
    torch.testing.assert_close(signed_hyperbolic_inverse(t64(ys)), t64(expected), rtol=1e-9, atol=0)


def test_signed_hyperbolic_round_trip_float64():
    mags = torch.logspace(-6, 4, 401, dtype=torch.float64)  # 1e-6 … 1e4
    x = torch.cat([-mags.flip(0), t64([0.0]), mags])
    torch.testing.assert_close(
        signed_hyperbolic_inverse(signed_hyperbolic(x)), x, rtol=1e-5, atol=0
    )
    torch.testing.assert_close(
        signed_hyperbolic(signed_hyperbolic_inverse(x)), x, rtol=1e-5, atol=0
    )


def test_signed_hyperbolic_round_trip_float32_keeps_small_values():
    # The cancellation-free forms keep relative precision near 0 in float32 too.
    mags = torch.logspace(-6, 4, 101)
    x = torch.cat([-mags, mags])
    torch.testing.assert_close(
        signed_hyperbolic_inverse(signed_hyperbolic(x)), x, rtol=1e-5, atol=0
    )


def test_signed_hyperbolic_no_nan_at_huge_values():
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([1e9, -1e9, 1e30, -1e30, 0.0], dtype=dtype)
        assert not signed_hyperbolic(x).isnan().any()
        assert not signed_hyperbolic_inverse(x).isnan().any()


# ---------------------------------------------------------------------------------------------
# scalar_expectation, dtypes, devices, validation
# ---------------------------------------------------------------------------------------------


def test_scalar_expectation_hand_value():
    # 0.25 · 0 + 0.75 · 2 = 1.5; 0.5 · 0 + 0.5 · 2 = 1.0
    out = scalar_expectation(t64([[[0.25, 0.75], [0.5, 0.5]]]), t64([0.0, 2.0]))
    torch.testing.assert_close(out, t64([[1.5, 1.0]]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_function_keeps_dtype_and_sums_to_one(dtype):
    z = c51_support(dtype)
    v = torch.tensor([-1e4, -3.3, 0.0, 0.7, 9.99, 1e4], dtype=dtype)
    p = torch.rand(6, 51).softmax(-1).to(dtype)
    tol = {"rtol": 0, "atol": 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-5}
    for out in (
        two_hot(v, z),
        hl_gauss(v, z, hl_gauss_sigma(z)),
        categorical_projection(p, v, torch.full_like(v, 0.99), z),
    ):
        assert out.dtype == dtype
        assert not out.isnan().any()
        torch.testing.assert_close(out.float().sum(-1), torch.ones(6), **tol)
    assert signed_hyperbolic(v).dtype == dtype
    assert signed_hyperbolic_inverse(v).dtype == dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    z = c51_support(torch.float32)
    v = torch.randn(64) * 12
    p = torch.rand(64, 51).softmax(-1)
    d = torch.rand(64)
    cpu = [two_hot(v, z), hl_gauss(v, z, 0.3), categorical_projection(p, v, d, z)]
    zc, vc = z.cuda(), v.cuda()
    gpu = [
        two_hot(vc, zc),
        hl_gauss(vc, zc, 0.3),
        categorical_projection(p.cuda(), vc, d.cuda(), zc),
    ]
    for a, b in zip(cpu, gpu, strict=True):
        assert b.is_cuda
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-5)


def test_degenerate_support_is_rejected():
    for bad in (torch.tensor([0.0]), torch.zeros(2, 2)):
        with pytest.raises(ValueError, match="support"):
            two_hot(torch.zeros(1), bad)
        with pytest.raises(ValueError, match="support"):
            categorical_projection(torch.ones(1, 1), torch.zeros(1), torch.zeros(1), bad)
