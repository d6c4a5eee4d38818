"""Dopamine's published Atari baselines: the shipped file read back against numbers read from
the source JSON (google/dopamine@5873f54, `git show HEAD:baselines/atari/data/<game>.json`),
iterations matched to agent steps by hand, the CLI, and report.py --reference on real runs."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import report
import train
from analysis import reference
from analysis.data.make_dopamine_reference import split_runs
from analysis.runs import read_run
from configs.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
needs_data = pytest.mark.skipif(
    not reference.has_data(),
    reason="Dopamine's baseline data is not on this machine "
    "(python -m analysis.data.make_dopamine_reference CLONE builds it)",
)
PNG = b"\x89PNG\r\n\x1a\n"
ADAM_MSE = "DQN (Adam + MSE in JAX)"

# The five runs of DQN (Adam + MSE in JAX) on pong at iterations 0-2: records 4975 + 199 r + i
# of pong.json (the agent's block starts at record 4975; its iterations restart at 0 every 199).
PONG_ADAM_MSE = {
    0: [-20.269961977186313, -20.22178988326848, -20.272727272727273, -20.1003861003861,
        -20.086614173228348],
    1: [-19.483660130718953, -18.40625, -19.405228758169933, -17.305555555555557,
        -18.14569536423841],
    2: [-17.44144144144144, -17.107843137254903, -17.428571428571427, -14.805555555555555,
        -14.869158878504672],
}  # fmt: skip


@needs_data
@pytest.mark.parametrize(
    "game, agent, run, iteration, value",
    [
        ("breakout", "DQN", 0, 0, 1.571078431372549),  # record 0
        ("breakout", "DQN", 0, 1, 2.9643835616438357),
        ("breakout", "DQN", 0, 198, 94.60427807486631),  # record 198, the run's last
        ("breakout", "DQN", 1, 0, 1.650990099009901),  # record 199: the iteration restarts
        ("breakout", "DQN", 4, 198, 93.0327868852459),  # record 994, the agent's last
        ("breakout", ADAM_MSE, 0, 0, 1.7080592105263157),  # record 4975
        ("breakout", ADAM_MSE, 1, 0, 1.7526970954356846),  # record 5174
        ("breakout", ADAM_MSE, 4, 198, 172.87261146496814),  # record 5969, the file's last
        ("space_invaders", "DQN", 0, 0, 168.5164835164835),
        ("space_invaders", "DQN", 0, 198, 1843.1297709923665),
        ("space_invaders", "DQN", 1, 0, 156.64529914529913),
        ("space_invaders", ADAM_MSE, 0, 1, 271.44607843137254),
        ("space_invaders", ADAM_MSE, 1, 0, 178.33333333333334),
        ("space_invaders", ADAM_MSE, 4, 198, 3860.722891566265),
    ],
)
def test_values_read_back_are_the_source_jsons_exactly(game, agent, run, iteration, value):
    assert reference.load(game, agent).values[run, iteration] == value


@needs_data
def test_every_game_has_five_full_runs_of_each_of_the_six_agents():
    assert len(reference.games()) == 60
    for game in reference.games():
        for agent in reference.AGENTS:
            values = reference.load(game, agent).values
            assert values.shape == (5, 199) and not np.isnan(values).any(), (game, agent)


def test_runs_are_split_where_the_iteration_restarts_or_the_agent_changes():
    records = [{"Agent": a, "Iteration": i, "Value": v} for a, i, v in [
        ("A", 0, 1.0), ("A", 1, 2.0), ("A", 0, 3.0), ("A", 1, 4.0), ("A", 2, 5.0),
        ("B", 0, 6.0), ("B", 0, 7.0), ("B", 2, 8.0)]]  # fmt: skip
    assert split_runs(records) == {
        "A": [{0: 1.0, 1: 2.0}, {0: 3.0, 1: 4.0, 2: 5.0}],
        "B": [{0: 6.0}, {0: 7.0, 2: 8.0}],  # a run may lack an iteration
    }


@needs_data
@pytest.mark.parametrize(
    "spelling", ["Breakout", "breakout", "ALE/Breakout-v5", "BreakoutNoFrameskip-v4"]
)
def test_a_game_is_found_by_any_spelling_the_suite_accepts(spelling):
    assert reference.reference_game(spelling) == "breakout"


@needs_data
def test_dopamines_own_game_names_map_to_rom_ids():
    assert reference.reference_game("spaceinvaders") == "space_invaders"
    assert reference.reference_game("SpaceInvaders") == "space_invaders"
    assert reference.load("ALE/SpaceInvaders-v5", ADAM_MSE).game == "space_invaders"


def test_an_iteration_is_250k_agent_steps_at_frame_skip_4():
    assert reference.iteration_of(249_999) == 0 and reference.iteration_of(250_000) == 1
    assert reference.iteration_steps(3) == (750_000, 1_000_000)
    assert reference.iteration_of(199_999, frame_skip=5) == 0
    assert reference.iteration_of(200_000, frame_skip=5) == 1  # 1M frames at frame skip 5


@needs_data
def test_matched_gives_the_iteration_holding_a_step_and_a_scores_percentile():
    """Breakout DQN at iteration 7 (records 7 + 199 r of breakout.json); a score of 16.0 has
    two runs below it (14.12, 15.59) of five: the 40th percentile."""
    runs = [18.98404255319149, 16.52289156626506, 14.11804008908686, 15.592592592592593,
            16.432835820895523]  # fmt: skip
    match = reference.matched("Breakout", "dqn", 7 * 250_000 + 12_345, score=16.0)
    assert match.iteration == 7 and match.runs == tuple(runs)
    assert match.mean == pytest.approx(sum(runs) / 5)
    assert (match.low, match.high) == (min(runs), max(runs))
    assert match.percentile == 40.0
    tie = reference.matched("breakout", "dqn", 7 * 250_000, score=16.432835820895523)
    assert tie.percentile == 50.0  # two below, one equal: (2 + 0.5) / 5
    assert reference.matched("breakout", "dqn", 199 * 250_000, score=0.0) is None


@needs_data
def test_mean_spread_and_std_over_runs_per_iteration():
    curve = reference.load("pong", "dqn_adam_mse")
    for i, runs in PONG_ADAM_MSE.items():
        assert curve.mean()[i] == pytest.approx(np.mean(runs))
        assert (curve.low()[i], curve.high()[i]) == (min(runs), max(runs))
        assert curve.std()[i] == pytest.approx(np.std(runs, ddof=1))


@needs_data
def test_edges_stop_at_the_last_step_shown():
    curve = reference.load("pong", "dqn_adam_mse")
    assert list(reference.edges_until(curve, 240.0)) == [0, 240]
    assert list(reference.edges_until(curve, 600_000)) == [0, 250_000, 500_000, 600_000]
    assert list(reference.edges_until(curve, 500_000)) == [0, 250_000, 500_000]


def write_run(path: Path, config: dict, returns: dict[int, float]) -> None:
    """A run directory as train.py leaves one: config.yaml and TensorBoard events written by the
    training loop's own logger."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    logger = train.TensorBoardLogger(path)
    for step, value in returns.items():
        logger.scalar("charts/episodic_return", value, step)
    logger.close()


LONG_RETURNS = {100_000: -21.0, 240_000: -19.0, 260_000: -18.40625, 510_000: -10.0, 740_000: 0.0}
"""Episodes of a long Pong run: two in iteration 0, one in iteration 1, two in iteration 2."""


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """A real 300-step Pong run in one env (400-frame games: three, ending at steps 100, 200 and
    300; acting only, as updates cost seconds), a real 600-step CartPole run, and a long Pong run
    (seed 7) written from the first one's config with the logger: partial, no checkpoint."""
    logdir = tmp_path_factory.mktemp("runs")
    argv = ["--env", "Pong", "--preset", "smoke", "--total-steps", "300", "--logdir", str(logdir),
            "--run-name", "pong__dqn__s1", "--set", "probes.enabled=false",
            "--set", "env.num_envs=1", "--set", "env.max_episode_frames=400",
            "--set", "agent.learning_starts=1000"]  # fmt: skip
    assert train.main(argv) == 0
    argv = ["--env", "CartPole-v1", "--preset", "classic", "--total-steps", "600",
            "--logdir", str(logdir), "--run-name", "cartpole__dqn__s1",
            "--set", "probes.enabled=false"]  # fmt: skip
    assert train.main(argv) == 0
    config = yaml.safe_load((logdir / "pong__dqn__s1" / "config.yaml").read_text())
    config["train"].update(seed=7, total_steps=1_000_000)
    write_run(logdir / "pong__dqn__s7", config, LONG_RETURNS)
    return logdir


@needs_data
def test_a_runs_returns_are_compared_per_iteration_by_hand(runs_dir):
    run = read_run(runs_dir / "pong__dqn__s7")
    curve = reference.load("pong", "dqn_adam_mse")
    found = reference.compare(curve, run.returns.steps, run.returns.values)
    assert [c.reference.iteration for c in found] == [0, 1, 2]
    assert [c.episodes for c in found] == [2, 1, 2]
    assert [c.mean_return for c in found] == [-20.0, -18.40625, -5.0]
    assert [c.steps for c in found] == [(0, 250_000), (250_000, 500_000), (500_000, 750_000)]
    assert [list(c.reference.runs) for c in found] == [PONG_ADAM_MSE[i] for i in range(3)]
    # -20 beats all five runs of iteration 0 (-20.27 ... -20.09); -18.40625 ties the middle
    # run of iteration 1 with two below it; -5 beats all of iteration 2.
    assert [c.reference.percentile for c in found] == [100.0, 50.0, 100.0]


def episode_returns(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    points = events.Scalars("charts/episodic_return")
    return np.array([e.step for e in points]), np.array([e.value for e in points])


@pytest.fixture(scope="module")
def reported(runs_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report")
    argv = [str(runs_dir), "--out", str(out), "--reps", "50", "--reference", "dopamine"]
    assert report.main(argv) == 0
    return out, json.loads((out / "summary.json").read_text())


@needs_data
def test_the_report_sets_each_atari_run_beside_the_reference(reported, runs_dir):
    _, summary = reported
    assert summary["reference"]["agents"] == {"dqn_adam_mse": ADAM_MSE}
    assert "5873f5494ee0c2d7c016d0ab2ad530354fec59d0" in summary["reference"]["source"]
    runs = {r["name"]: r for r in summary["runs"] + summary["partial_runs"]}
    steps, values = episode_returns(runs_dir / "pong__dqn__s1")
    assert list(steps) == [100, 200, 300]
    (short,) = runs["pong__dqn__s1"]["reference"]["dqn_adam_mse"]
    assert short["iteration"] == 0 and short["episodes"] == len(values)
    assert short["return"] == pytest.approx(values.mean())
    assert short["reference_mean"] == pytest.approx(np.mean(PONG_ADAM_MSE[0]))
    assert [short["reference_min"], short["reference_max"]] == [-20.272727272727273,
                                                                -20.086614173228348]  # fmt: skip
    long = runs["pong__dqn__s7"]["reference"]["dqn_adam_mse"]
    assert [c["return"] for c in long] == [-20.0, -18.40625, -5.0]
    assert [c["percentile"] for c in long] == [100.0, 50.0, 100.0]


@needs_data
def test_a_game_without_a_reference_is_said_so(reported):
    out, summary = reported
    cartpole = next(r for r in summary["runs"] if r["game"] == "CartPole-v1")
    assert cartpole["reference"] is None
    assert set(summary["reference"]["games_without"]) == {"CartPole-v1"}
    page = (out / "index.html").read_text()
    assert "<h2>Published baselines</h2>" in page
    assert "CartPole-v1: not an Atari game" in page
    assert "No published reference: CartPole-v1 is not an Atari game" in page  # its caption


@needs_data
def test_the_pong_figure_is_drawn_with_the_reference_behind_it(reported):
    out, _ = reported
    data = (out / "curves_pong.png").read_bytes()
    assert data[:8] == PNG and len(data) > 1000
    assert "Dopamine&#x27;s published training returns" in (out / "index.html").read_text()


@needs_data
def test_other_agents_are_chosen_by_short_name(runs_dir, tmp_path):
    argv = [str(runs_dir), "--out", str(tmp_path), "--reps", "20",
            "--reference", "dopamine:C51,rainbow"]  # fmt: skip
    assert report.main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["reference"]["agents"] == {"c51": "C51", "rainbow": "Rainbow"}
    entry = next(r for r in summary["runs"] if r["name"] == "pong__dqn__s1")["reference"]
    assert set(entry) == {"c51", "rainbow"}


@needs_data
@pytest.mark.parametrize(
    "spec, named", [("dopamine:nope", "dqn_adam_mse"), ("atari57", "dopamine:AGENT")]
)
def test_a_bad_reference_is_one_error_line(spec, named, runs_dir, tmp_path, capsys):
    assert report.main([str(runs_dir), "--out", str(tmp_path), "--reference", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and named in err and err.count("\n") == 1


@needs_data
def test_the_cli_prints_mean_min_and_max_per_iteration():
    command = [sys.executable, "-m", "analysis.reference", "ALE/Pong-v5", "--agent",
               "dqn_adam_mse", "--every", "1"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[3:]}
    assert len(rows) == 199
    for i, runs in PONG_ADAM_MSE.items():
        expected = [f"{v:.1f}" for v in (np.mean(runs), min(runs), max(runs))]
        assert rows[str(i)][2:] == expected


@needs_data
def test_the_default_cli_table_shows_0_to_9_then_every_10th_and_the_last(capsys):
    assert reference.main(["breakout"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = [int(line.split()[0]) for line in lines[3:]]
    assert shown == [*range(10), *range(10, 199, 10), 198]
    assert all(name in lines[1] for name in reference.AGENTS)


@needs_data
@pytest.mark.parametrize(
    "argv, named",
    [(["CartPole-v1"], "breakout"), (["adventure"], "space_invaders"),
     (["pong", "--agent", "dqn2"], "dqn_adam_mse (DQN (Adam + MSE in JAX))")],
)  # fmt: skip
def test_an_unknown_game_or_agent_is_one_error_line_listing_the_known_ones(argv, named, capsys):
    assert reference.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and named in err and err.count("\n") == 1


@needs_data
def test_the_cli_error_has_no_traceback():
    command = [sys.executable, "-m", "analysis.reference", "Tetris"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: 'Tetris'") and "Traceback" not in done.stderr


@needs_data
def test_a_user_error_for_an_unknown_agent_lists_short_and_source_names():
    with pytest.raises(UserError, match=r"quantile \(Quantile \(JAX\)\)"):
        reference.load("pong", "qr")
    assert reference.agent_name("Quantile (JAX)") == "quantile"
    assert reference.parse_spec("dopamine") == ("dqn_adam_mse",)
    assert reference.parse_spec("Dopamine:dqn, c51,dqn") == ("dqn", "c51")


@needs_data
def test_the_data_ships_with_its_licence_and_notice():
    data = ROOT / "analysis" / "data"
    notice = (data / "NOTICE").read_text()
    assert "Apache License, Version 2.0" in notice and "5873f5494ee0c2d7c016" in notice
    found = reference.data_file()
    assert "Apache License" in (found.parent / "LICENSE-dopamine").read_text()
    assert found.stat().st_size < 2.1e6
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = setup["package-data"]["analysis"]
    assert {"data/*.csv.gz", "data/NOTICE", "data/LICENSE-dopamine"} <= set(shipped)


def test_missing_data_is_one_error_line_naming_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv(reference.DATA_ENV, str(tmp_path / "none.csv.gz"))
    reference.table.cache_clear(), reference.load.cache_clear()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "analysis.reference", "breakout"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert str(tmp_path / "none.csv.gz") in result.stderr
        assert "make_dopamine_reference CLONE" in result.stderr
        with pytest.raises(UserError, match="not on this machine"):
            reference.load("breakout", "dqn")
    finally:
        reference.table.cache_clear(), reference.load.cache_clear()
