"""MinAtar through the suite's vector-env interface: observations checked cell by cell against the
games' start states, continual MinAtar's channel and action unions and its switch schedule, the
MinAtar network under every option, and a real learning run on Breakout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_train import (
    Options,
    assert_dueling,
    assert_l2_penalty,
    assert_layer_norms,
    assert_noisy,
    assert_replay,
    assert_td_rule,
    assert_value_head,
    assert_weight_decay,
    rebuild,
    stored_rewards,
)

import train
from agents import find_checkpoint, load_checkpoint
from configs import UserError, resolve
from envs import EnvSpec, make_env, resolve_env_id
from envs.minatar import game_at
from evaluate import evaluate
from evaluate import main as evaluate_main
from networks import MinAtarCNN, build_network
from probes.observe import measure

ROOT = Path(__file__).resolve().parents[1]
CONTINUAL = "MinAtar/SpaceInvaders,MinAtar/Asterix,MinAtar/Seaquest"
UNION = [  # SpaceInvaders' 6 channels, then Asterix's and Seaquest's new names in their order
    "cannon", "alien", "alien_left", "alien_right", "friendly_bullet", "enemy_bullet",
    "player", "enemy", "trail", "gold",
    "sub_front", "sub_back", "enemy_fish", "enemy_sub", "oxygen_guage", "diver_guage", "diver",
]  # fmt: skip


def env_config(*assignments: str):
    return resolve(preset="minatar", assignments=list(assignments)).env


def cells(plane: np.ndarray) -> set[tuple[int, int]]:
    """The (row, column) cells of a 10x10 uint8 map that are on (255)."""
    assert set(np.unique(plane)) <= {0, 255}
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(plane), strict=True)}


def test_breakout_starts_as_minatar_draws_it_channels_first_in_uint8() -> None:
    env, spec, obs = make_env("MinAtar/Breakout", 2, 7, env_config())
    env.close()
    assert (spec.name, spec.is_atari, spec.frame_stack) == ("minatar_breakout", False, 1)
    assert spec.obs_shape == (4, 10, 10) and spec.obs_dtype == np.uint8 and obs.dtype == np.uint8
    assert spec.num_actions == 6  # the preset plays the paper's full action set
    for o in obs:  # channels paddle, ball, trail, brick (breakout.py); the ball starts in a corner
        assert cells(o[0]) == {(9, 4)}
        assert cells(o[1]) in ({(3, 0)}, {(3, 9)}) and cells(o[2]) == cells(o[1])
        assert cells(o[3]) == {(r, c) for r in (1, 2, 3) for c in range(10)}


def test_minimal_action_set_and_the_ids_accepted() -> None:
    config = env_config("env.full_action_space=false")
    _, spec, _ = make_env("MinAtar/breakout", 1, 0, config)
    assert spec.num_actions == 3  # n, l, r
    assert resolve_env_id("MinAtar/SpaceInvaders-v1") == ("minatar_space_invaders", False)
    assert resolve_env_id(CONTINUAL) == ("minatar_space_invaders-asterix-seaquest", False)


def test_continual_minatar_maps_each_game_into_the_union_of_channels_and_actions() -> None:
    config = env_config("env.full_action_space=false", "env.switch_every=1000")
    env, spec, obs = make_env(CONTINUAL, 2, 0, config)
    assert env.channels == UNION and spec.obs_shape == (17, 10, 10)
    assert spec.num_actions == 6  # SpaceInvaders n,l,r,f + Asterix n,l,u,r,d: all six
    for o in obs:  # SpaceInvaders' start: the cannon at (9, 5), aliens in rows 0-3, columns 2-7
        assert cells(o[0]) == {(9, 5)}
        aliens = {(r, c) for r in range(4) for c in range(2, 8)}
        assert cells(o[1]) == aliens and cells(o[2]) == aliens  # moving left at first
        assert not o[3:].any()
    env.close()
    _, _, obs = make_env(CONTINUAL, 2, 0, config, step=1000)  # Asterix's turn
    for o in obs:  # the player at (5, 5) in Asterix's `player` channel, nothing else yet
        assert cells(o[UNION.index("player")]) == {(5, 5)}
        assert o.sum() == 255


def test_games_switch_at_multiples_of_switch_every_counted_in_agent_steps() -> None:
    assert [game_at(s, 3, 100) for s in (0, 99, 100, 250, 299, 300, 1234)] == [0, 0, 1, 2, 2, 0, 0]
    config = env_config("env.switch_every=50")
    env, _, _ = make_env(CONTINUAL, 3, 0, config, step=40)
    rng, steps, resetting = np.random.default_rng(0), 40, np.zeros(3, dtype=bool)
    while steps < 50:
        _, _, terminated, truncated, info = env.step(rng.integers(6, size=3))
        assert set(info["game"]) == {"space_invaders"}
        steps += int((~resetting).sum())
        resetting = terminated | truncated
    assert resetting.all() and (truncated | terminated).all()  # every game cut at the switch
    _, rewards, terminated, truncated, info = env.step(rng.integers(6, size=3))
    assert list(info["game"]) == ["asterix"] * 3 and not rewards.any()
    assert not (terminated | truncated).any()
    env.close()


@pytest.mark.parametrize(
    ("env_id", "assignments", "message"),
    [
        (CONTINUAL, [], r"set env.switch_every .* \(> 0\)"),
        ("MinAtar/Breakout", ["env.switch_every=100"], r"names one \(breakout\)"),
        ("MinAtar/Breakout,Pong", ["env.switch_every=100"], r"'Pong' in --env .* not a MinAtar"),
        ("MinAtar/Pong", [], r"MinAtar ids are MinAtar/Asterix, MinAtar/Breakout"),
    ],
)
def test_bad_game_lists_are_refused_with_what_is_accepted(
    env_id: str, assignments: list[str], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        make_env(env_id, 1, 0, env_config(*assignments))


def test_without_the_extra_train_py_names_it_instead_of_a_traceback(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['minatar'] = None; import train; "
        f"sys.exit(train.main(['--env', 'MinAtar/Breakout', '--logdir', r'{tmp_path}']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "optional extra [minatar]" in done.stderr
    assert 'pip install -e ".[minatar]"' in done.stderr
    assert not any(tmp_path.iterdir())  # no run directory left behind


def test_the_minatar_network_is_the_papers_and_probes_see_its_layers() -> None:
    config = resolve(preset="minatar", variant="ln")
    net = build_network((4, 10, 10), 6, config.network, categorical=False)
    assert isinstance(net.torso, MinAtarCNN)
    # conv 4->16 3x3: 4*16*9 + 16; fc 16*8*8 -> 128; head 128 -> 6; LayerNorms over (16, 8, 8), 128
    sizes = (4 * 16 * 9 + 16) + (1024 * 128 + 128) + (128 * 6 + 6) + 2 * 1024 + 2 * 128
    assert sum(p.numel() for p in net.parameters()) == sizes
    states = torch.randint(0, 2, (64, 4, 10, 10), dtype=torch.uint8) * 255
    figures = measure(net, states, ntk_batch=8)
    assert {"dormant_fraction/torso.relu_conv1", "dormant_fraction/torso.relu_fc"} <= set(figures)
    assert 1 <= figures["feature_rank"] <= 64


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def run(logdir: Path, *flags: str, sets: tuple[str, ...] = ()) -> Path:
    """train.py with the minatar preset, in-process; returns the run directory."""
    argv = ["--preset", "minatar", "--logdir", str(logdir), "--run-name", "r", *flags]
    assert train.main(argv + [arg for s in sets for arg in ("--set", s)]) == 0
    return logdir / "r"


SHORT = ("agent.learning_starts=100", "train.log_interval=100", "eval.interval=0")
PROBES = ("probes.interval=300", "probes.ntk_batch=8", "probes.fit_steps=10")
SPEC = EnvSpec("minatar_breakout", False, (4, 10, 10), np.dtype("uint8"), 6, 1)


@pytest.mark.parametrize(
    "variant", ["rainbow+ln+wd", "hl_gauss+l2", "two_hot+hyperbolic+no_clip", "mse"]
)
def test_every_option_trains_on_minatar_with_the_probes(variant: str, tmp_path: Path) -> None:
    """Each option changed what it exists to change on the MinAtar network, read back from the run
    with test_train.py's checks. The preset learns raw rewards already (minatar.yaml), so no_clip
    changes nothing here: Breakout's bricks pay 1, stored as 1 either way."""
    sets = SHORT + PROBES + ("replay.save_contents=true", "replay.capacity=400")
    run_dir = run(tmp_path, "--variant", variant, "--total-steps", "300", sets=sets)
    logged = scalars(run_dir)
    assert [s for s, _ in logged["plasticity/dormant_fraction"]] == [0, 300]
    assert np.isfinite(logged["losses/td_loss"][-1][1])
    options = Options.of(variant, preset_loss="huber")  # minatar.yaml: dqn.py's smooth_l1_loss
    checkpoint = load_checkpoint(find_checkpoint(run_dir))
    agent, states = rebuild(checkpoint, SPEC), checkpoint["probes"]["batch"][:32]
    # ln: the conv 3x3 makes 16 maps of 8x8 from 10x10, then the 128-unit layer.
    assert_layer_norms(agent.online, [(16, 8, 8), (128,)] if "ln" in options else [])
    assert_value_head(checkpoint["agent"]["online"], options, actions=6)
    if "dueling" in options:
        assert_dueling(agent.online, states)
    epsilons = [v for _, v in logged["charts/epsilon"]]
    assert_noisy(agent.online, states, options, sigma0=0.1, epsilons=epsilons)  # rainbow's σ₀
    assert_replay(checkpoint["replay"], options)
    assert not checkpoint["config"]["env"]["clip_rewards"]
    assert stored_rewards(checkpoint["replay"]) == {0.0, 1.0}
    assert_td_rule(agent, states, options)
    assert_l2_penalty(agent, 1e-5 if "l2" in options else 0.0)
    assert_weight_decay(agent, 0.01 if "wd" in options else 0.0)


def test_continual_run_logs_returns_per_game_and_evaluates_the_game_of_its_step(
    tmp_path: Path,
) -> None:
    sets = SHORT + ("env.switch_every=200", "probes.enabled=false")
    run_dir = run(tmp_path, "--env", CONTINUAL, "--total-steps", "400", sets=sets)
    logged = scalars(run_dir)
    steps = {
        game: [s for s, _ in logged.get(f"charts/episodic_return/{game}", [])]
        for game in ("space_invaders", "asterix", "seaquest")
    }
    assert steps["space_invaders"] and max(steps["space_invaders"]) <= 200  # cut at 200
    assert steps["asterix"] and min(steps["asterix"]) > 200 and not steps["seaquest"]
    total = len(logged["charts/episodic_return"])
    assert total == len(steps["space_invaders"]) + len(steps["asterix"])
    result = evaluate(run_dir, 2, num_envs=2, device="cpu")  # step 400: Seaquest's turn
    assert result["step"] == 400 and len(result["returns"]) == 2


def test_video_of_a_minatar_run_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    run_dir = run(tmp_path, "--total-steps", "200", sets=SHORT + ("probes.enabled=false",))
    argv = [str(run_dir), "--episodes", "1", "--video", str(tmp_path / "play.mp4")]
    assert evaluate_main(argv) == 2
    assert "MinAtar, whose 10x10 maps have no screen" in capsys.readouterr().err


LEARN = (  # the preset, faster: the minimal action set, a short epsilon decay, a larger step
    "env.full_action_space=false",
    "agent.lr=3e-4",
    "agent.learning_starts=1000",
    "agent.epsilon_decay_steps=10000",
    "agent.epsilon_end=0.05",
    "agent.target_update_interval=500",
    "eval.interval=3000",
    "probes.enabled=false",
)


def test_dqn_learns_minatar_breakout_well_past_random_play(tmp_path: Path) -> None:
    """Random play scores 0.5 a game (README, MinAtar); after 15,000 steps (~40 s on a free core)
    the best evaluated network, scored afresh on 20 games, must reach 2.0. Seeds 1-5 offline
    scored 4.70, 4.85, 2.95, 3.55 and 4.95."""
    run_dir = run(tmp_path, "--seed", "1", "--total-steps", "15000", sets=LEARN)
    result = evaluate(run_dir / "best.pt", 20, num_envs=5, device="cpu")
    assert result["mean"] >= 2.0, result["returns"]
