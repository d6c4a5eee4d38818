"""Value losses against hand-computed TD targets and cross-entropies."""

from __future__ import annotations

import math

import pytest
import torch

from agents.losses import make_loss
from agents.value_targets import signed_hyperbolic, signed_hyperbolic_inverse
from configs import resolve

SUPPORT = torch.tensor([-1.0, 0.0, 1.0])


def loss_for(variant: str):
    return make_loss(resolve(variant=variant).agent, SUPPORT)


def call(loss, taken, next_taken, reward, discount):
    t = torch.tensor
    return loss(t(taken), t(next_taken), t(reward), t(discount))


def test_huber_and_mse_on_a_hand_target():
    # target = 1 + 0.5 * 3 = 2.5; prediction 2 -> error 0.5; Huber 0.5 * 0.5² = 0.125; MSE 0.25.
    huber, metrics = call(loss_for("huber"), [2.0], [3.0], [1.0], [0.5])
    mse, _ = call(loss_for("mse"), [2.0], [3.0], [1.0], [0.5])
    assert huber.item() == 0.125 and mse.item() == 0.25
    assert metrics["target_magnitude"].item() == 2.5
    # Beyond |error| = 1 Huber is linear: error 3 -> 3 - 0.5 = 2.5.
    assert call(loss_for("huber"), [5.5], [3.0], [1.0], [0.5])[0].item() == 2.5


def test_scalar_loss_with_the_hyperbolic_transform_fits_h_of_the_target():
    loss = loss_for("huber+hyperbolic")  # Huber named: the default loss is MSE (Dopamine JAX)
    next_h = signed_hyperbolic(torch.tensor([8.0]))  # the network predicts h(Q̄) = h(8)
    value, metrics = loss(torch.zeros(1), next_h, torch.tensor([1.0]), torch.tensor([0.5]))
    # target = 1 + 0.5 * 8 = 5, fit in h-space: h(5) = sqrt(6) - 1 + 0.005
    h5 = math.sqrt(6) - 1 + 0.005
    assert math.isclose(metrics["target_magnitude"].item(), 5.0, rel_tol=1e-5)
    assert math.isclose(value.item(), 0.5 * h5**2 if h5 < 1 else h5 - 0.5, rel_tol=1e-5)
    q = loss.q_values(signed_hyperbolic(torch.tensor([[2.0, -7.0]])))
    torch.testing.assert_close(q, torch.tensor([[2.0, -7.0]]))
    torch.testing.assert_close(signed_hyperbolic_inverse(signed_hyperbolic(q)), q)


def test_c51_terminal_reward_zero_targets_the_zero_atom():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    value, metrics = make_loss(resolve(variant="c51").agent, SUPPORT)(
        logits, torch.zeros(1, 3), torch.tensor([0.0]), torch.tensor([0.0])
    )
    assert math.isclose(value.item(), -math.log(0.3), rel_tol=1e-6)  # all mass on z = 0
    assert metrics["target_magnitude"].item() == 0.0
    entropy = -(0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5))
    assert math.isclose(metrics["entropy"].item(), entropy, rel_tol=1e-6)


def test_two_hot_encodes_the_scalar_td_target():
    # next distribution uniform -> Q̄ = 0; target = 0.5 + 0.9 * 0 = 0.5 -> two-hot [0, .5, .5].
    # Uniform predicted logits -> cross-entropy = log 3.
    value, metrics = loss_for("two_hot")(
        torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([0.5]), torch.tensor([0.9])
    )
    assert math.isclose(value.item(), math.log(3), rel_tol=1e-6)
    assert metrics["target_magnitude"].item() == 0.5
    # Predicting exactly [0, .5, .5] leaves only the target's entropy, log 2.
    fitted = torch.log(torch.tensor([[1e-12, 0.5, 0.5]]))
    value, _ = loss_for("two_hot")(
        fitted, torch.zeros(1, 3), torch.tensor([0.5]), torch.tensor([0.9])
    )
    assert math.isclose(value.item(), math.log(2), rel_tol=1e-5)


def test_hl_gauss_q_values_are_the_expectation():
    loss = loss_for("hl_gauss")
    logits = torch.log(torch.tensor([[[0.2, 0.3, 0.5], [0.5, 0.5, 0.0 + 1e-30]]]))
    torch.testing.assert_close(loss.q_values(logits), torch.tensor([[0.3, -0.5]]))


def test_priorities_are_td_errors_for_scalar_heads_and_the_cross_entropy_for_c51() -> None:
    # Target 2.5 (as above): predictions 2 and 5.5 -> |δ| = 0.5 (Huber 0.125) and 3 (Huber 2.5).
    for variant in ("huber", "mse"):
        loss = loss_for(variant)
        per_sample, _ = call(loss, [2.0, 5.5], [3.0, 3.0], [1.0, 1.0], [0.5, 0.5])
        torch.testing.assert_close(loss.priority(per_sample), torch.tensor([0.5, 3.0]))
    c51 = loss_for("c51")
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    per_sample, _ = c51(logits, torch.zeros(1, 3), torch.tensor([0.0]), torch.tensor([0.0]))
    torch.testing.assert_close(c51.priority(per_sample), torch.tensor([-math.log(0.3)]))


WIDE = torch.linspace(-2.0, 2.0, 5)  # atoms -2, -1, 0, 1, 2; Δ = 1
"""A five-atom support for the priority tests, so that targets can lie between atoms."""


def hand_two_hot(v: float) -> list[float]:
    """Two-hot on WIDE by hand: (1 − w, w) on the atoms either side of v, w = v − ⌊v⌋."""
    probs = [0.0] * 5
    low = min(math.floor(v), 1)
    w = v - low
    probs[low + 2] += 1 - w
    probs[low + 3] += w
    return probs


def hand_hl_gauss(v: float) -> list[float]:
    """HL-Gauss on WIDE by hand in float64: N(v, 0.75²) mass in each unit bin, renormalised."""

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf((x - v) / (0.75 * math.sqrt(2))))

    edges = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
    mass = [cdf(hi) - cdf(lo) for lo, hi in zip(edges, edges[1:], strict=False)]
    return [m / sum(mass) for m in mass]


def hand_kl(p: list[float], logits: list[float]) -> float:
    """KL(p ‖ softmax(logits)) = Σ p_i (log p_i − log q_i) in float64, with 0 · log 0 = 0."""
    log_z = math.log(sum(math.exp(x) for x in logits))
    return sum(pi * (math.log(pi) - (x - log_z)) for pi, x in zip(p, logits, strict=True) if pi)


ENCODED = {"two_hot": hand_two_hot, "hl_gauss": hand_hl_gauss}


def terminal_priorities(variant: str, logits: torch.Tensor, targets: list[float]) -> torch.Tensor:
    """Priorities of terminal transitions (d = 0) whose TD targets are exactly `targets`."""
    loss = make_loss(resolve(variant=variant).agent, WIDE)
    n = len(targets)
    per_sample, _ = loss(logits, torch.zeros(n, 5), torch.tensor(targets), torch.zeros(n))
    return loss.priority(per_sample)


def test_a_perfect_fit_has_zero_priority_for_encoded_heads() -> None:
    # The edges, atoms and points between atoms: the cross-entropy there is the target's entropy
    # (0 to ln 2 for two-hot, ~1.2 nats for HL-Gauss), but the prediction has nothing to learn.
    targets = [-2.0, -1.5, -0.3, 0.0, 0.5, 1.0, 1.75, 2.0]
    for variant, encode in ENCODED.items():
        fitted = torch.tensor([encode(v) for v in targets]).clamp_min(1e-30).log()
        priority = terminal_priorities(variant, fitted, targets)
        assert priority.abs().max().item() < 1e-5, (variant, priority)


def test_encoded_priorities_are_the_kl_and_grow_with_the_td_error() -> None:
    # Prediction centred on 0.5: HL-Gauss's own encoding of 0.5, and for two-hot its two-hot
    # (0.5 on atoms 0 and 1) with a 1e-3 floor on every atom. Targets ordered by |δ| = |v − 0.5|.
    targets = [0.5, 0.25, 0.0, -0.5, -0.75, -1.5]
    floored = [(p + 1e-3) / (1 + 5e-3) for p in hand_two_hot(0.5)]
    predictions = {"two_hot": floored, "hl_gauss": hand_hl_gauss(0.5)}
    for variant, encode in ENCODED.items():
        logits = [math.log(q) for q in predictions[variant]]
        expected = torch.tensor([hand_kl(encode(v), logits) for v in targets])
        priority = terminal_priorities(variant, torch.tensor([logits] * len(targets)), targets)
        torch.testing.assert_close(priority, expected.float(), rtol=1e-4, atol=1e-5)
        assert (priority.diff() > 0).all(), (variant, priority)


def clipped(variant: str, next_logits, reward, discount) -> float:
    loss = loss_for(variant)
    n = len(reward)
    t = torch.tensor
    _, metrics = loss(torch.zeros(n, 3), t(next_logits), t(reward), t(discount))
    return metrics["losses/support_clipped"].mean().item()  # per sample: 1 if clipped


def test_support_clipped_counts_the_td_targets_strictly_outside_the_support() -> None:
    # Uniform next logits: Q̄ = 0, so the targets are the rewards. On [-1, 1]: -1.5, 1.0001, 2
    # and -3 lie outside; the end atoms -1 and 1 themselves do not.
    reward = [-1.5, -1.0, 0.3, 1.0, 1.0001, 2.0, -3.0, 0.9]
    for variant in ("two_hot", "hl_gauss", "c51"):
        value = clipped(variant, [[0.0] * 3] * 8, reward, [0.9] * 8)
        assert value == pytest.approx(4 / 8, abs=1e-7), variant


def test_support_clipped_reads_the_transformed_target_when_a_transform_is_on() -> None:
    # h(1.5) = 0.583 and h(2.9) = 0.978 are inside [-1, 1]; h(3) = 1.003, h(-5) = -1.454 are not.
    for variant in ("two_hot+hyperbolic", "hl_gauss+hyperbolic"):
        value = clipped(variant, [[0.0] * 3] * 4, [1.5, 2.9, 3.0, -5.0], [0.9] * 4)
        assert value == pytest.approx(2 / 4, abs=1e-7), variant


def test_c51_support_clipped_counts_expected_targets_not_atoms() -> None:
    # Next distribution (0.25, 0.25, 0.5) has E[z] = 0.25: r + E[z] = 1.05 (out) and 0.95 (in,
    # though its atom 0.7 + 1 is clipped); terminal targets -2 (out), 0 and 1 (in).
    next_logits = [[math.log(0.25), math.log(0.25), math.log(0.5)]] * 5
    reward, discount = [0.8, 0.7, -2.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]
    assert clipped("c51", next_logits, reward, discount) == pytest.approx(2 / 5, abs=1e-7)
