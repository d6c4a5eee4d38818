"""report.py and evaluate.py --video on real runs: CartPole runs of two variants and two seeds, a
run stopped by SIGTERM before its budget, a tiny Pong run; figures checked against hand work."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
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


def cartpole(logdir: Path, variant: str, seed: int, total: int) -> list[str]:
    return ["--env", "CartPole-v1", "--preset", "classic", "--total-steps", str(total),
            "--seed", str(seed), "--variant", variant, "--logdir", str(logdir),
            "--run-name", f"cartpole__{variant}__s{seed}",
            "--set", "probes.interval=1000", "--set", "probes.fit_interval=0"]  # fmt: skip


def stop_when_checkpointed(process: subprocess.Popen, run_dir: Path, timeout: float = 120) -> None:
    """SIGTERM a training process once it has written a checkpoint: it saves and exits."""
    deadline = time.monotonic() + timeout
    while not list(run_dir.glob("ckpt_*.pt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    """Four finished CartPole runs (2 variants x 2 seeds) and one partial run (dqn, seed 3),
    stopped by SIGTERM long before its 1M-step budget."""
    logdir = tmp_path_factory.mktemp("runs")
    for variant in VARIANTS:
        for seed in SEEDS:
            assert train.main(cartpole(logdir, variant, seed, 4000)) == 0
    argv = [*cartpole(logdir, "dqn", 3, 1_000_000), "--set", "train.checkpoint_interval=500"]
    partial = subprocess.Popen(
        [sys.executable, "train.py", *argv],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop_when_checkpointed(partial, logdir / "cartpole__dqn__s3")
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
    """A tiny Pong run: 400-frame games (100 agent steps), two envs, one game each."""
    logdir = tmp_path_factory.mktemp("pong")
    argv = ["--env", "Pong", "--preset", "smoke", "--total-steps", "240", "--logdir", str(logdir),
            "--run-name", "pong__dqn__s1", "--set", "probes.enabled=false",
            "--set", "env.max_episode_frames=400"]  # fmt: skip
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
    for name in ["curves_CartPole-v1.png", "aggregates_raw.png", "improvement_raw.png",
                 "probes.png", "probes_vs_return_raw.png"]:  # fmt: skip
        data = (report_dir / name).read_bytes()
        assert data[:8] == PNG and len(data) > 1000, name
        assert f"src='{name}'" in page
    assert "Raw returns" in page  # CartPole has no human reference scores


def test_final_returns_are_the_mean_of_the_last_tenth_of_the_episodes(summary):
    assert len(summary["runs"]) == 4
    for run in summary["runs"]:
        assert run["episodes"] >= 20
        assert run["final_return"] == pytest.approx(by_hand_final(Path(run["path"])), abs=1e-9)
        assert run["final_score"] == run["final_return"] and run["score"] == "raw_return"


def test_iqm_and_its_interval_agree_with_a_hand_computation(summary, runs_dir):
    """Two seeds on one game: a resample holds (a, a), (a, b) or (b, b) with probabilities 1/4,
    1/2, 1/4, so the 2.5th and 97.5th percentiles of the bootstrap IQM are min and max."""
    table = summary["aggregates"]["raw"]
    assert table["games"] == ["CartPole-v1"] and table["left_out"] == []
    for variant in VARIANTS:
        finals = [by_hand_final(runs_dir / f"cartpole__{variant}__s{s}") for s in SEEDS]
        entry = table["variants"][variant]
        assert entry["runs"] == 2
        assert entry["iqm"]["value"] == pytest.approx(scipy.stats.trim_mean(finals, 0.25))
        assert entry["iqm"]["ci"] == pytest.approx([min(finals), max(finals)])
        assert entry["mean"]["value"] == pytest.approx(np.mean(finals))
        assert "optimality_gap" not in entry  # raw returns have no gap to a human score


def test_probability_of_improvement_counts_pairs_of_runs(summary, runs_dir):
    x = [by_hand_final(runs_dir / f"cartpole__ln+wd__s{s}") for s in SEEDS]
    y = [by_hand_final(runs_dir / f"cartpole__dqn__s{s}") for s in SEEDS]
    pairs = [(a > b) + 0.5 * (a == b) for a in x for b in y]
    poi = summary["aggregates"]["raw"]["variants"]["ln+wd"]["probability_of_improvement"]
    assert poi["over"] == "dqn" and poi["value"] == pytest.approx(np.mean(pairs))
    assert 0.0 <= poi["ci"][0] <= poi["value"] <= poi["ci"][1] <= 1.0


def test_a_partial_run_is_listed_apart_and_kept_out_of_the_aggregates(summary, report_dir):
    (partial,) = summary["partial_runs"]
    assert partial["name"] == "cartpole__dqn__s3" and partial["partial"] is True
    assert 0 < partial["step"] < partial["total_steps"] == 1_000_000
    assert partial["in_aggregate"] is False
    assert "cartpole__dqn__s3" not in {r["name"] for r in summary["runs"]}
    assert all(r["in_aggregate"] for r in summary["runs"])
    page = (report_dir / "index.html").read_text()
    assert page.index("cartpole__dqn__s3") > page.index("Partial runs (not in the aggregates)")


def test_a_rerun_is_not_counted_as_another_seed(runs_dir, tmp_path):
    runs = tmp_path / "runs"
    for name in ["cartpole__dqn__s1", "cartpole__dqn__s2"]:
        shutil.copytree(runs_dir / name, runs / name)
    shutil.copytree(runs_dir / "cartpole__dqn__s1", runs / "cartpole__dqn__s1__20261128-101500")
    (runs / "notes").mkdir()
    (runs / "notes" / "config.yaml").write_text("variant: [")
    assert report.main([str(runs), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["aggregates"]["raw"]["variants"]["dqn"]["runs"] == 2
    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert skipped["cartpole__dqn__s1"].startswith("same game, variant and seed as")
    assert skipped["notes"].startswith("Cannot read")


def test_report_videos_link_one_clip_per_variant(summary, report_dir):
    assert set(summary["videos"]) == set(VARIANTS)
    for clip in summary["videos"].values():
        file = clip["file"]
        frame = imageio.get_reader(report_dir / file).get_data(0)
        assert frame.shape == (400, 600, 3)  # CartPole's rendered screen
        assert f"src='{file}'" in (report_dir / "index.html").read_text()


def test_atari_aggregates_are_human_normalised(pong_dir, tmp_path):
    assert report.main([str(pong_dir), "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    (run,) = summary["runs"]
    expected = human_normalized("pong", by_hand_final(pong_dir / "pong__dqn__s1"))
    assert run["score"] == "human_normalized" and run["final_score"] == pytest.approx(expected)
    entry = summary["aggregates"]["atari"]["variants"]["dqn"]
    assert entry["iqm"]["value"] == pytest.approx(expected)
    assert entry["optimality_gap"]["value"] == pytest.approx(max(0.0, 1.0 - expected))


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
