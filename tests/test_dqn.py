"""The DQN learning rule: acting, target network, double-DQN, L2 and weight decay, schedules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import DQNAgent, build_agent, linear_epsilon, native_bf16
from configs import resolve
from envs import EnvSpec
from replay import Batch

SPEC = EnvSpec("CartPole-v1", False, (4,), np.dtype("float32"), 2, 1)
CPU = torch.device("cpu")


def agent_for(variant: str = "dqn", *assignments: str) -> DQNAgent:
    """A CartPole agent: the classic preset, but plain DQN targets and lr 1e-3 unless changed."""
    fixed = ["agent.double=false", "agent.lr=1e-3", *assignments]
    config = resolve(preset="classic", variant=variant, assignments=fixed)
    return build_agent(config, SPEC, CPU)


def batch(reward: float = 0.0, discount: float = 0.99, size: int = 4) -> Batch:
    obs = torch.randn(size, 4, generator=torch.Generator().manual_seed(0))
    return Batch(
        obs,
        torch.zeros(size, dtype=torch.int64),
        torch.full((size,), reward),
        torch.full((size,), discount),
        obs.flip(0),
    )


def set_head(network, bias: list[float]) -> None:
    """Make Q(s, ·) = bias for every state."""
    with torch.no_grad():
        network.head.out.weight.zero_()
        network.head.out.bias.copy_(torch.tensor(bias))


def test_epsilon_holds_during_warmup_then_decays_linearly():
    kw = {"start": 1.0, "end": 0.01, "decay_steps": 1000, "warmup": 200}
    assert linear_epsilon(100, **kw) == 1.0
    assert linear_epsilon(700, **kw) == pytest.approx(0.505)  # halfway: (1 + 0.01) / 2
    assert linear_epsilon(5000, **kw) == 0.01


def test_greedy_acting_is_batched_and_random_acting_is_uniform():
    agent = agent_for()
    set_head(agent.online, [0.0, 1.0])
    obs = np.zeros((5, 4), dtype=np.float32)
    assert agent.act(obs, 0.0).tolist() == [1] * 5
    actions = np.concatenate([agent.act(obs, 1.0) for _ in range(400)])
    assert abs(actions.mean() - 0.5) < 0.05  # 2,000 fair coin flips: std 0.011


def test_the_target_network_is_untouched_by_updates_until_synced():
    agent = agent_for()
    before = {k: v.clone() for k, v in agent.target.state_dict().items()}
    for _ in range(5):
        agent.update(batch(reward=1.0))
    assert all(torch.equal(before[k], v) for k, v in agent.target.state_dict().items())
    assert not all(torch.equal(before[k], v) for k, v in agent.online.state_dict().items())
    agent.sync_target()
    assert all(
        torch.equal(agent.online.state_dict()[k], v) for k, v in agent.target.state_dict().items()
    )


def test_double_dqn_lets_the_online_network_choose_the_bootstrap_action():
    # Online prefers action 1, target values action 0 at 5 and action 1 at 2. With reward 0 and
    # discount 1, DQN's target is max_a Q̄ = 5; double-DQN's is Q̄(s', argmax_a Q) = 2.
    for double, expected in [("false", 5.0), ("true", 2.0)]:
        agent = agent_for("dqn", f"agent.double={double}")
        set_head(agent.online, [0.0, 1.0])
        set_head(agent.target, [5.0, 2.0])
        metrics = agent.update(batch(reward=0.0, discount=1.0))
        assert metrics["target_magnitude"].item() == pytest.approx(expected)


def zero_td_agent(variant: str) -> DQNAgent:
    """Q ≡ 0 with reward 0: the TD error and its gradient are exactly zero, so only L2 or weight
    decay can move the weights."""
    agent = agent_for(variant, "agent.loss=mse")
    set_head(agent.online, [0.0, 0.0])
    set_head(agent.target, [0.0, 0.0])
    return agent


def test_weight_decay_shrinks_weights_by_one_minus_lr_times_wd():
    agent = zero_td_agent("wd")
    lr, wd = agent.config.lr, agent.config.weight_decay
    w, b = agent.online.torso.fc1.weight.clone(), agent.online.torso.fc1.bias.clone()
    agent.update(batch())
    torch.testing.assert_close(agent.online.torso.fc1.weight, w * (1 - lr * wd))
    torch.testing.assert_close(agent.online.torso.fc1.bias, b)  # biases are not decayed


def test_l2_adds_two_lambda_w_to_the_gradient():
    agent = zero_td_agent("l2")
    lr, eps, lam = agent.config.lr, agent.config.adam_eps, agent.config.l2
    w, b = agent.online.torso.fc1.weight.clone(), agent.online.torso.fc1.bias.clone()
    agent.update(batch())
    # First Adam step with gradient g = 2λw: m̂ = g, v̂ = g², so w' = w - lr * g / (|g| + eps).
    g = 2 * lam * w
    torch.testing.assert_close(agent.online.torso.fc1.weight, w - lr * g / (g.abs() + eps))
    torch.testing.assert_close(agent.online.torso.fc1.bias, b)


def test_repeated_updates_fit_a_fixed_batch():
    for variant in ["huber", "c51", "two_hot", "hl_gauss+ln+wd"]:
        agent = agent_for(variant)
        fixed = batch(reward=1.0, discount=0.0)  # terminal: target is exactly 1
        first = agent.update(fixed)["td_loss"].item()
        # 1,500 updates: LayerNorm + weight decay fits more slowly (seeds 1-5 sit 0.11-0.18 from
        # the target after 500 updates, 0.03-0.06 after 1,000), so 500 left no margin across CPUs.
        for _ in range(1500):
            last = agent.update(fixed)
        assert last["td_loss"].item() < 0.5 * first, variant
        q_taken = agent.q_values(fixed.obs)[:, 0]  # every transition took action 0
        assert (q_taken - 1.0).abs().max().item() < 0.2, (variant, q_taken)


def test_gradient_clipping_bounds_the_reported_norm_before_clipping():
    # loss = 3 Σθ: every gradient element is 3, so the norm is 3√N before clipping to 0.001.
    agent = agent_for("dqn", "agent.max_grad_norm=0.001")
    params = list(agent.online.parameters())
    count = sum(p.numel() for p in params)
    metrics = agent.optimise(3.0 * sum(p.sum() for p in params))
    assert metrics["grad_norm"].item() == pytest.approx(3.0 * count**0.5, rel=1e-5)
    clipped = torch.sqrt(sum(p.grad.double().square().sum() for p in params)).item()
    assert clipped == pytest.approx(0.001, rel=1e-4)  # what the optimiser stepped with
    unclipped = agent_for("dqn")  # max_grad_norm 0: the gradient is left as it is
    unclipped.optimise(3.0 * sum(p.sum() for p in unclipped.online.parameters()))
    assert all(torch.all(p.grad == 3.0) for p in unclipped.online.parameters())


def test_state_dict_round_trip_restores_weights_optimizer_and_rng():
    agent = agent_for("c51")
    agent.update(batch(reward=1.0))
    copy = agent_for("c51")
    copy.load_state_dict(agent.state_dict())
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    assert agent.act(obs, 0.5).tolist() == copy.act(obs, 0.5).tolist()
    m1, m2 = agent.update(batch(reward=1.0)), copy.update(batch(reward=1.0))
    assert m1["td_loss"].item() == m2["td_loss"].item()
    assert copy.updates == agent.updates == 2


def test_a_resumed_noisy_agent_draws_the_noise_an_uninterrupted_one_would():
    """The noise generator's state is in the checkpoint: after a round trip both agents draw the
    same ε, and a fresh agent of the same seed (a resume that restored nothing) would not."""
    agent = agent_for("rainbow")
    for _ in range(3):
        agent.update(batch(reward=1.0))
    resumed, fresh = agent_for("rainbow"), agent_for("rainbow")
    resumed.load_state_dict(agent.state_dict())
    for a in (agent, resumed, fresh):
        a.learning_noise.resample()
    layer = "head.advantage.fc.eps_out"
    draws = [dict(a.online.named_buffers())[layer] for a in (agent, resumed, fresh)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def seeded_agent(variant: str, *assignments: str) -> DQNAgent:
    torch.manual_seed(0)
    return agent_for(variant, *assignments)


def test_compiled_networks_learn_exactly_like_eager_ones():
    eager, compiled = seeded_agent("c51"), seeded_agent("c51", "train.compile=true")
    for _ in range(3):
        m_eager, m_compiled = eager.update(batch(reward=1.0)), compiled.update(batch(reward=1.0))
        torch.testing.assert_close(m_compiled["td_loss"], m_eager["td_loss"], rtol=1e-4, atol=1e-5)
    # The checkpointed modules are the plain ones, whose weights the compiled calls trained.
    assert set(compiled.state_dict()["online"]) == set(eager.state_dict()["online"])


def test_bfloat16_autocast_keeps_losses_in_float32_and_close_to_full_precision():
    full, mixed = seeded_agent("hl_gauss"), seeded_agent("hl_gauss", "train.amp=true")
    m_full, m_mixed = full.update(batch(reward=1.0)), mixed.update(batch(reward=1.0))
    assert m_mixed["td_loss"].dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: relative error of a few 1e-3 on the logits.
    torch.testing.assert_close(m_mixed["td_loss"], m_full["td_loss"], rtol=2e-2, atol=0)


def test_channels_last_learns_like_the_nchw_layout_up_to_float_rounding():
    """The same Breakout-shaped network, seed and batches in both layouts: only the convolution
    kernels' summation order differs, so 20 updates give the same losses to float rounding."""
    spec = EnvSpec("Breakout", True, (4, 84, 84), np.dtype("uint8"), 4, 4)
    agents = []
    for layout in ("false", "true"):
        torch.manual_seed(0)
        config = resolve(assignments=["agent.lr=1e-3", f"train.channels_last={layout}"])
        agents.append(build_agent(config, spec, CPU))
    nchw, nhwc = agents
    assert nhwc.online.torso.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        obs = torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8, generator=g)
        action = torch.randint(0, 4, (32,), generator=g)
        reward, discount = torch.rand(32, generator=g), torch.full((32,), 0.99)
        fixed = Batch(obs, action, reward, discount, obs.flip(0))
        m_nchw, m_nhwc = nchw.update(fixed), nhwc.update(fixed)
        torch.testing.assert_close(m_nhwc["td_loss"], m_nchw["td_loss"], rtol=1e-4, atol=1e-6)
    for a, b in zip(nchw.online.parameters(), nhwc.online.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni", True),  # AMD Zen 4
        ("avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", True),  # Intel Sapphire Rapids
        ("fp asimd sve bf16 i8mm", True),  # Arm Neoverse V1 (its Features line)
        ("fpu avx2 avx512f avx512bw avx512_vnni", False),  # AVX-512 without BF16
        ("fpu sse4_2 avx avx2 fma", False),
    ],
)
def test_native_bf16_reads_the_cpu_flags(flags: str, native: bool, tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert native_bf16(cpuinfo) is native
    assert native_bf16(tmp_path / "absent") is None  # not Linux: unknown, so no warning
