"""Value losses against hand-computed TD targets and cross-entropies."""

from __future__ import annotations

import math

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
    loss = loss_for("hyperbolic")
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


def test_priorities_are_td_errors_for_scalar_heads_and_cross_entropies_for_categorical() -> None:
    # Target 2.5 (as above): predictions 2 and 5.5 -> |δ| = 0.5 (Huber 0.125) and 3 (Huber 2.5).
    for variant in ("huber", "mse"):
        loss = loss_for(variant)
        per_sample, _ = call(loss, [2.0, 5.5], [3.0, 3.0], [1.0, 1.0], [0.5, 0.5])
        torch.testing.assert_close(loss.priority(per_sample), torch.tensor([0.5, 3.0]))
    c51 = loss_for("c51")
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    per_sample, _ = c51(logits, torch.zeros(1, 3), torch.tensor([0.0]), torch.tensor([0.0]))
    torch.testing.assert_close(c51.priority(per_sample), torch.tensor([-math.log(0.3)]))
