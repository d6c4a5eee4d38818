"""report.py and evaluate.py --video on real runs: CartPole runs of two variants and two seeds, one
under another learning rate, a run stopped by SIGTERM before a larger budget, tiny Pong runs, tiny
MinAtar runs of two games; figures checked against hand work."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from html import escape
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import scipy.stats
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import evaluate
import report
import train
from analysis import stats
from envs import human_normalized

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("dqn", "ln+wd")
SEEDS = (1, 2)
PNG = b"\x89PNG\r\n\x1a\n"
# Labels of the settings, worked out from configs/presets/classic.yaml: the CartPole runs differ
# from the classic preset (lr 5e-4, 60,000 steps) in their budget, one also in its learning rate;
# probes.* (they only observe), train.seed and train.checkpoint_interval are not a setting.
LABELS = {v: f"{v} [classic / train.total_steps=4000]" for v in VARIANTS}
LR_LABEL = "ln+wd [classic / agent.lr=0.0001, train.total_steps=4000]"
LONG_LABEL = "dqn [classic / train.total_steps=1000000]"
# configs/presets/smoke.yaml runs 800 steps with no episode cap.
PONG_LABEL = "dqn [smoke / env.max_episode_frames=400, train.total_steps=240]"


def cartpole(logdir: Path, variant: str, seed: int, total: int, name: str = "") -> list[str]:
    return ["--env", "CartPole-v1", "--preset", "classic", "--total-steps", str(total),
            "--seed", str(seed), "--variant", variant, "--logdir", str(logdir),
            "--run-name", name or f"cartpole__{variant}__s{seed}",
            "--set", "probes.interval=1000", "--set", "probes.fit_interval=0"]  # fmt: skip


def newest_checkpoint(run_dir: Path) -> int:
    return max((int(p.stem.split("_")[1]) for p in run_dir.glob("ckpt_*.pt")), default=0)


def stop_past(process: subprocess.Popen, run_dir: Path, step: int, timeout: float = 180) -> None:
    """SIGTERM a training process once it has written a checkpoint past `step`: it saves and
    exits."""
    deadline = time.monotonic() + timeout
    while newest_checkpoint(run_dir) <= step and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    """Four finished CartPole runs (2 variants x 2 seeds), a fifth finished one under another
    learning rate (ln+wd, seed 3), and one partial run (dqn, seed 1 again) of a 1M-step budget,
    stopped by SIGTERM once it had gone further than the finished seed 1 (4,000 steps)."""
    logdir = tmp_path_factory.mktemp("runs")
    for variant in VARIANTS:
        for seed in SEEDS:
            assert train.main(cartpole(logdir, variant, seed, 4000)) == 0
    lr = [*cartpole(logdir, "ln+wd", 3, 4000, "cartpole__ln+wd__s3__lr"), "--set", "agent.lr=1e-4"]
    assert train.main(lr) == 0
    argv = [*cartpole(logdir, "dqn", 1, 1_000_000, "cartpole__dqn__s1__1m"),
            "--set", "train.checkpoint_interval=500"]  # fmt: skip
    partial = subprocess.Popen(
        [sys.executable, "train.py", *argv],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop_past(partial, logdir / "cartpole__dqn__s1__1m", 4000)
    return logdir


@pytest.fixture(scope="session")
def report_dir(runs_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert report.main([str(runs_dir), "--out", str(out), "--baseline", "dqn", "--videos"]) == 0
    return out


@pytest.fixture(scope="session")
def summary(report_dir) -> dict:
    return json.loads((report_dir / "summary.json").read_text())


@pytest.fixture(scope="session")
def pong_dir(tmp_path_factory) -> Path:
    """Two tiny Pong runs: 400-frame games (100 agent steps), two envs, one game each. Seed 1 loses
    two points in its last game, seed 3 none: its final return is exactly 0.0."""
    logdir = tmp_path_factory.mktemp("pong")
    for seed in (1, 3):
        argv = ["--env", "Pong", "--preset", "smoke", "--total-steps", "240",
                "--logdir", str(logdir), "--run-name", f"pong__dqn__s{seed}", "--seed", str(seed),
                "--set", "probes.enabled=false", "--set", "env.max_episode_frames=400"]  # fmt: skip
        assert train.main(argv) == 0
    return logdir


@pytest.fixture(scope="session")
def pong_report(pong_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pong_report")
    assert report.main([str(pong_dir), "--out", str(out), "--videos"]) == 0
    return out, json.loads((out / "summary.json").read_text())


MINATAR_GAMES = {"Breakout": "minatar_breakout", "SpaceInvaders": "minatar_space_invaders"}
MINATAR_LABELS = {
    v: f"{v} [minatar / agent.learning_starts=200, agent.epsilon_decay_steps=400, "
    "train.total_steps=1000]"
    for v in VARIANTS
}


@pytest.fixture(scope="session")
def minatar_dir(tmp_path_factory) -> Path:
    """Two MinAtar games x 2 variants x 2 seeds, 1,000 steps each (800 updates, ε down to 0.1 by
    step 600, so that the variants act apart): Space Invaders' returns run several times
    Breakout's."""
    logdir = tmp_path_factory.mktemp("minatar")
    for game, name in MINATAR_GAMES.items():
        for variant in VARIANTS:
            for seed in SEEDS:
                argv = ["--env", f"MinAtar/{game}", "--preset", "minatar", "--total-steps", "1000",
                        "--variant", variant, "--seed", str(seed), "--logdir", str(logdir),
                        "--run-name", f"{name}__{variant}__s{seed}",
                        "--set", "agent.learning_starts=200",
                        "--set", "agent.epsilon_decay_steps=400",
                        "--set", "probes.enabled=false"]  # fmt: skip
                assert train.main(argv) == 0
    return logdir


def episode_returns(run_dir: Path) -> np.ndarray:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return np.array([e.value for e in events.Scalars("charts/episodic_return")])


def by_hand_final(run_dir: Path) -> float:
    """The mean of the last 10% of the run's episodes, at least one."""
    returns = episode_returns(run_dir)
    last = max(1, len(returns) // 10)
    return float(returns[-last:].mean())


def test_the_report_writes_a_page_real_png_figures_and_a_summary(report_dir):
    page = (report_dir / "index.html").read_text()
    for name in ["curves_CartPole-v1.png", "aggregates_CartPole-v1.png",
                 "improvement_CartPole-v1.png", "probes.png",
                 "probes_vs_return_CartPole-v1.png"]:  # fmt: skip
        data = (report_dir / name).read_bytes()
        assert data[:8] == PNG and len(data) > 1000, name
        assert f"src='{name}'" in page
    # CartPole has no human reference scores
    assert "Raw returns of CartPole-v1 alone</b>: a classic-control task" in page


def test_final_returns_are_the_mean_of_the_last_tenth_of_the_episodes(summary):
    assert len(summary["runs"]) == 5
    for run in summary["runs"]:
        assert run["episodes"] >= 20
        assert run["final_return"] == pytest.approx(by_hand_final(Path(run["path"])), abs=1e-9)
        assert run["final_score"] == run["final_return"] and run["score"] == "raw_return"


def test_iqm_and_its_interval_agree_with_a_hand_computation(summary, runs_dir):
    """Two seeds on one game: a resample holds (a, a), (a, b) or (b, b) with probabilities 1/4,
    1/2, 1/4, so the 2.5th and 97.5th percentiles of the bootstrap IQM are min and max."""
    table = summary["aggregates"]["CartPole-v1"]
    assert table["games"] == ["CartPole-v1"] and table["left_out"] == []
    for variant in VARIANTS:
        finals = [by_hand_final(runs_dir / f"cartpole__{variant}__s{s}") for s in SEEDS]
        entry = table["variants"][LABELS[variant]]
        assert entry["runs"] == 2
        assert entry["iqm"]["value"] == pytest.approx(scipy.stats.trim_mean(finals, 0.25))
        assert entry["iqm"]["ci"] == pytest.approx([min(finals), max(finals)])
        assert entry["mean"]["value"] == pytest.approx(np.mean(finals))
        assert "optimality_gap" not in entry  # raw returns have no gap to a human score


def test_probability_of_improvement_counts_pairs_of_runs(summary, runs_dir):
    x = [by_hand_final(runs_dir / f"cartpole__ln+wd__s{s}") for s in SEEDS]
    y = [by_hand_final(runs_dir / f"cartpole__dqn__s{s}") for s in SEEDS]
    pairs = [(a > b) + 0.5 * (a == b) for a in x for b in y]
    table = summary["aggregates"]["CartPole-v1"]["variants"]
    poi = table[LABELS["ln+wd"]]["probability_of_improvement"]
    assert poi["over"] == LABELS["dqn"] and poi["value"] == pytest.approx(np.mean(pairs))
    assert 0.0 <= poi["ci"][0] <= poi["value"] <= poi["ci"][1] <= 1.0


def test_a_partial_run_is_listed_apart_and_kept_out_of_the_aggregates(summary, report_dir):
    (partial,) = summary["partial_runs"]
    assert partial["name"] == "cartpole__dqn__s1__1m" and partial["partial"] is True
    assert partial["step"] == newest_checkpoint(Path(partial["path"]))
    assert 4000 < partial["step"] < partial["total_steps"] == 1_000_000
    assert partial["in_aggregate"] is False and partial["setting"] == LONG_LABEL
    assert "cartpole__dqn__s1__1m" not in {r["name"] for r in summary["runs"]}
    assert all(r["in_aggregate"] for r in summary["runs"])
    page = (report_dir / "index.html").read_text()
    assert page.index("cartpole__dqn__s1__1m") > page.index("Partial runs (not in the aggregates)")


def test_each_setting_is_its_own_group_and_conflicts_are_listed(summary, runs_dir, report_dir):
    """The 1M-step run went further than the finished dqn seed 1 but is another setting: seed 1
    stays in dqn's aggregates. The lr=1e-4 run is a group of its own, never a third ln+wd seed."""
    table = summary["aggregates"]["CartPole-v1"]["variants"]
    assert set(table) == {LABELS["dqn"], LABELS["ln+wd"], LR_LABEL}
    assert [table[LABELS[v]]["runs"] for v in VARIANTS] == [2, 2]
    lr_final = by_hand_final(runs_dir / "cartpole__ln+wd__s3__lr")
    assert table[LR_LABEL]["runs"] == 1 and table[LR_LABEL]["variant"] == "ln+wd"
    assert table[LR_LABEL]["mean"]["value"] == pytest.approx(lr_final)
    names = {r["name"]: r["setting"] for r in summary["runs"]}
    assert names == {
        "cartpole__dqn__s1": LABELS["dqn"],
        "cartpole__dqn__s2": LABELS["dqn"],
        "cartpole__ln+wd__s1": LABELS["ln+wd"],
        "cartpole__ln+wd__s2": LABELS["ln+wd"],
        "cartpole__ln+wd__s3__lr": LR_LABEL,
    }
    assert summary["skipped"] == []
    assert summary["conflicts"] == [
        {"game": "CartPole-v1", "variant": "dqn", "settings": {LABELS["dqn"]: 2, LONG_LABEL: 1}},
        {"game": "CartPole-v1", "variant": "ln+wd", "settings": {LABELS["ln+wd"]: 2, LR_LABEL: 1}},
    ]
    page = (report_dir / "index.html").read_text()
    assert "CartPole-v1, dqn: 2 settings" in page
    assert escape(f"{LONG_LABEL} (1 run)") in page and escape(LR_LABEL) in page


ASIDE_REASON = "set aside when its run restarted from scratch (no checkpoint); not counted"


def test_every_directory_not_counted_is_listed_with_why(runs_dir, tmp_path):
    """A rerun under a newer name, a relaunch killed before its first checkpoint (newer name
    still), a run set aside by a sweep, one under another hidden folder and an unreadable config:
    two seeds counted, every other directory listed."""
    runs = tmp_path / "runs"
    for name in ["cartpole__dqn__s1", "cartpole__dqn__s2"]:
        shutil.copytree(runs_dir / name, runs / name)
    shutil.copytree(runs_dir / "cartpole__dqn__s1", runs / "cartpole__dqn__s1__20261128-101500")
    killed = runs / "cartpole__dqn__s2__20261128-101500"
    shutil.copytree(runs_dir / "cartpole__dqn__s2", killed)
    for checkpoint in killed.glob("ckpt_*.pt"):
        checkpoint.unlink()
    aside = runs / ".sweep" / "aside" / "cartpole__dqn__s1-1"
    shutil.copytree(runs_dir / "cartpole__dqn__s1", aside)
    hidden = runs / ".trash" / "cartpole__dqn__s2"
    shutil.copytree(runs_dir / "cartpole__dqn__s2", hidden)
    (runs / "notes").mkdir()
    (runs / "notes" / "config.yaml").write_text("variant: [")
    assert report.main([str(runs), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    table = summary["aggregates"]["CartPole-v1"]["variants"]
    assert list(table) == [LABELS["dqn"]] and table[LABELS["dqn"]]["runs"] == 2
    assert {r["name"] for r in summary["runs"]} == {
        "cartpole__dqn__s1__20261128-101500",  # same progress: the newest name
        "cartpole__dqn__s2",  # finished: beats the newer, partial relaunch
    }
    assert summary["partial_runs"] == []
    skipped = {s["path"]: (s["kind"], s["reason"]) for s in summary["skipped"]}
    assert set(skipped) == {str(p) for p in [runs / "cartpole__dqn__s1", killed, aside, hidden,
                                             runs / "notes"]}  # fmt: skip
    assert skipped[str(runs / "cartpole__dqn__s1")] == (
        "duplicate",
        "duplicate of cartpole__dqn__s1__20261128-101500 (same game, variant, setting and "
        "seed): the same progress, and the newest name counts",
    )
    assert skipped[str(killed)] == (
        "duplicate",
        "duplicate of cartpole__dqn__s2 (same game, variant, setting and seed): that run "
        "finished, this one did not (step 0 of 4,000)",
    )
    assert skipped[str(aside)] == ("aside", ASIDE_REASON)
    assert skipped[str(hidden)] == ("hidden", "under the hidden folder .trash; not counted")
    kind, reason = skipped[str(runs / "notes")]
    assert kind == "unreadable" and reason.startswith("Cannot read")
    page = (tmp_path / "out" / "index.html").read_text()
    assert f"{escape(str(aside))}: {escape(ASIDE_REASON)}" in page
    assert escape(str(killed)) in page and escape(str(hidden)) in page


def test_report_videos_link_one_clip_per_variant(summary, report_dir):
    assert set(summary["videos"]) == {*LABELS.values(), LR_LABEL}
    for clip in summary["videos"].values():
        file = clip["file"]
        frame = imageio.get_reader(report_dir / file).get_data(0)
        assert frame.shape == (400, 600, 3)  # CartPole's rendered screen
        assert f"src='{file}'" in (report_dir / "index.html").read_text()


def test_atari_aggregates_are_human_normalised(pong_dir, pong_report):
    _, summary = pong_report
    expected = {
        name: human_normalized("pong", by_hand_final(pong_dir / name))
        for name in ["pong__dqn__s1", "pong__dqn__s3"]
    }
    assert {r["name"]: r["final_score"] for r in summary["runs"]} == pytest.approx(expected)
    assert {r["score"] for r in summary["runs"]} == {"human_normalized"}
    (group,) = summary["aggregates"]
    assert group == "human_normalized" and summary["aggregates"][group]["games"] == ["pong"]
    entry = summary["aggregates"][group]["variants"][PONG_LABEL]
    scores = np.array(list(expected.values()))
    assert entry["iqm"]["value"] == pytest.approx(scores.mean())  # two runs: nothing trimmed
    assert entry["optimality_gap"]["value"] == pytest.approx(np.mean(1 - np.minimum(scores, 1)))


def test_a_final_return_of_zero_is_a_score_when_a_clip_is_chosen(pong_dir, pong_report):
    """The clip plays the best final return: seed 3's 0.0 beats seed 1's -2.0."""
    assert by_hand_final(pong_dir / "pong__dqn__s3") == 0.0
    assert by_hand_final(pong_dir / "pong__dqn__s1") == -2.0
    out, summary = pong_report
    assert summary["videos"][PONG_LABEL]["run"] == "pong__dqn__s3"
    assert summary["videos"][PONG_LABEL]["file"] in (out / "index.html").read_text()


def test_games_without_human_scores_are_aggregated_per_game_only(minatar_dir, tmp_path):
    """Two MinAtar games: one table per game of its own raw returns (IQM of two runs = their
    mean, CI = [min, max]), no aggregate over both games, and no game called classic control."""
    assert report.main([str(minatar_dir), "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["aggregates"]) == set(MINATAR_GAMES.values())
    for game in MINATAR_GAMES.values():
        table = summary["aggregates"][game]
        assert table["games"] == [game] and table["score"] == "raw_return"
        for variant in VARIANTS:
            finals = [by_hand_final(minatar_dir / f"{game}__{variant}__s{s}") for s in SEEDS]
            entry = table["variants"][MINATAR_LABELS[variant]]
            assert entry["runs"] == 2
            assert entry["iqm"]["value"] == pytest.approx(np.mean(finals))
            assert entry["iqm"]["ci"] == pytest.approx([min(finals), max(finals)])
    page = (tmp_path / "index.html").read_text()
    for game in MINATAR_GAMES.values():
        assert f"Raw returns of {game} alone</b>: a MinAtar game" in page
    assert "(classic control)" not in page and "classic-control task" not in page
    assert "never pooled across games" in page
    for game in MINATAR_GAMES.values():
        data = (tmp_path / f"aggregates_{game}.png").read_bytes()
        assert data[:8] == PNG and f"src='aggregates_{game}.png'" in page


def test_aggregates_go_through_rlibles_stratified_bootstrap():
    """On a 5-run x 3-game matrix: point estimates exactly, intervals close to a bootstrap that
    resamples runs within each game, written out here."""
    scores = np.random.default_rng(7).normal(size=(5, 3))
    table = stats.ScoreTable("raw", False, ("a", "b", "c"), {"v": scores}, {"v": ()}, ())
    result = stats.aggregates(table, stats.Bootstrap(reps=4000, seed=1))["v"]
    assert result["iqm"].value == pytest.approx(scipy.stats.trim_mean(scores.ravel(), 0.25))
    # rliable's median and mean are of the per-game means
    assert result["median"].value == pytest.approx(np.median(scores.mean(axis=0)))
    rng = np.random.default_rng(2)
    rows = rng.integers(0, 5, size=(4000, 5, 3))
    iqms = [scipy.stats.trim_mean(scores[r, np.arange(3)].ravel(), 0.25) for r in rows]
    low, high = np.percentile(iqms, [2.5, 97.5])
    assert result["iqm"].low == pytest.approx(low, abs=0.08)
    assert result["iqm"].high == pytest.approx(high, abs=0.08)


def test_a_missing_report_extra_is_one_error_line_naming_it(runs_dir, tmp_path):
    code = ("import sys; sys.modules['rliable'] = None; import report; "
            f"sys.exit(report.main([{str(runs_dir)!r}, '--out', {str(tmp_path)!r}]))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and ".[report]" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_bad_runs_dir_is_one_error_line(make, tmp_path, capsys):
    runs = tmp_path / "runs"
    if make == "empty":
        runs.mkdir()
    assert report.main([str(runs), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(runs) in err


def played(run_dir: Path, tmp_path: Path) -> tuple[dict, list[np.ndarray]]:
    video, scores = tmp_path / "play.mp4", tmp_path / "scores.json"
    argv = [str(run_dir), "--episodes", "1", "--video", str(video), "--json", str(scores)]
    assert evaluate.main(argv) == 0
    return json.loads(scores.read_text()), [frame for frame in imageio.get_reader(video)]


def test_evaluate_records_cartpole_as_rgb_frames(runs_dir, tmp_path):
    result, frames = played(runs_dir / "cartpole__dqn__s1", tmp_path)
    assert frames[0].shape == (400, 600, 3) and frames[0].dtype == np.uint8
    # The clip is the evaluated game itself: its first frame and one after each step.
    assert len(frames) == result["lengths"][0] + 1


def test_evaluate_records_atari_at_the_native_screen_size(pong_dir, tmp_path):
    result, frames = played(pong_dir / "pong__dqn__s1", tmp_path)
    assert frames[0].shape == (210, 160, 3)
    assert len(frames) == result["lengths"][0] + 1 == 101  # 400 frames, frame skip 4
    assert len({f.mean().round(1) for f in frames}) > 1  # the screen moves


def test_hostile_run_and_folder_names_are_escaped_on_the_page(runs_dir, tmp_path):
    """Names a user or a tool may give run directories and the runs folder reach the page as
    text, never as markup: two counted runs, a duplicate and the root itself."""
    runs = tmp_path / "<b>r&d</b>"
    names = {
        "cartpole__dqn__s1": "<img src=x onerror=alert(1)>",
        "cartpole__dqn__s2": "s2\"'><script>alert(2)</script>",
    }
    for source, hostile in names.items():
        shutil.copytree(runs_dir / source, runs / hostile)
    shutil.copytree(runs_dir / "cartpole__dqn__s1", runs / "<i>dup</i>")  # listed as a duplicate
    assert report.main([str(runs), "--out", str(tmp_path / "out"), "--reps", "200"]) == 0
    page = (tmp_path / "out" / "index.html").read_text()
    for raw in ["<img src=x", "<script>alert", "<b>r&d", "<i>dup"]:
        assert raw not in page, raw
    (listed,) = json.loads((tmp_path / "out" / "summary.json").read_text())["skipped"]
    assert Path(listed["path"]).name in {"<i>dup</i>", names["cartpole__dqn__s1"]}
    for shown in [listed["path"], str(runs)]:  # counted runs are named in summary.json only
        assert escape(shown) in page, shown
