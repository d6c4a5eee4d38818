"""sweep.py end to end: real train.py runs on CartPole through the local pool and a real local Ray
cluster, the launcher killed mid-sweep and rerun, --status and --dry-run read back, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sweep
from agents import list_checkpoints
from sweeps.grid import Run, expand, parse_seeds
from sweeps.state import Ledger

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PY = str(ROOT / "train.py")
NAMES = ["CartPole-v1__dqn__s1", "CartPole-v1__ln__s1", "CartPole-v1__dqn__s2",
         "CartPole-v1__ln__s2"]  # fmt: skip


def grid_args(logdir: Path, *extra: str, variants: str = "dqn,ln", seeds: str = "1,2") -> list[str]:
    """A 2 x 2 CartPole sweep of short runs (probes and evaluation phases off)."""
    return ["--variants", variants, "--envs", "CartPole-v1", "--seeds", seeds, "--preset",
            "classic", "--total-steps", "2000", "--set", "probes.enabled=false", "--set",
            "eval.interval=0", "--logdir", str(logdir), *extra]  # fmt: skip


def run_sweep(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "sweep.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def starts(logdir: Path) -> dict[str, int]:
    """How many times the ledger says each run was launched."""
    counts: dict[str, int] = {}
    for record in Ledger(logdir).records():
        if record["event"] == "start":
            counts[record["run"]] = counts.get(record["run"], 0) + 1
    return counts


def files_of(run_dir: Path) -> dict[str, int]:
    """Each file of a run directory and its mtime: a rerun that touched it would change this."""
    return {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    logdir = tmp_path_factory.mktemp("sweep") / "runs"
    return logdir, run_sweep(*grid_args(logdir, "--workers", "2"))


def test_grid_expansion_names_each_run_game_variant_seed():
    runs = expand(["CartPole-v1", "pong"], ["dqn", "ln + wd"], parse_seeds("1,3-4"))
    assert [r.name for r in runs] == [
        f"{game}__{variant}__s{seed}"
        for seed in (1, 3, 4)
        for game in ("CartPole-v1", "pong")
        for variant in ("dqn", "ln+wd")
    ]
    assert runs[0] == Run(env="CartPole-v1", game="CartPole-v1", variant="dqn", seed=1)


def test_a_local_sweep_finishes_every_run_once(local_sweep):
    logdir, done = local_sweep
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in logdir.iterdir() if p.name != ".sweep") == sorted(NAMES)
    for name in NAMES:
        (newest,) = list_checkpoints(logdir / name)[-1:]
        assert int(newest.stem.split("_")[1]) >= 2000
    assert starts(logdir) == dict.fromkeys(NAMES, 1)
    assert "4/4 done, 0 failed" in done.stderr


def test_rerunning_a_finished_sweep_runs_nothing_again(local_sweep):
    logdir, _ = local_sweep
    before = {name: files_of(logdir / name) for name in NAMES}
    again = run_sweep(*grid_args(logdir, "--workers", "2"))
    assert again.returncode == 0, again.stderr
    assert "4 already done, 0 to run" in again.stderr
    assert starts(logdir) == dict.fromkeys(NAMES, 1)
    assert {name: files_of(logdir / name) for name in NAMES} == before


def test_status_shows_each_run_its_steps_and_last_return(local_sweep, capsys):
    logdir, _ = local_sweep
    assert sweep.main(grid_args(logdir, "--status", "--total-steps", "2500")) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["run", "state", "steps", "last", "return"]
    assert [row.split()[:2] for row in rows[1:]] == [[n, "partial"] for n in NAMES]
    for row in rows[1:]:
        done, total = row.split()[2].split("/")
        assert 2000 <= int(done.replace(",", "")) < 2500 and total == "2,500"
        assert 8 <= float(row.split()[3]) <= 500  # a CartPole episode lasts 8 to 500 steps


def test_dry_run_prints_the_train_commands_of_unfinished_runs(local_sweep, tmp_path, capsys):
    logdir, _ = local_sweep
    assert sweep.main(grid_args(logdir, "--dry-run", "--workers", "2")) == 0
    assert capsys.readouterr().out == ""  # all done: nothing to start
    fresh = tmp_path / "fresh"
    argv = grid_args(fresh, "--dry-run", "--workers", "1", "--set", "train.threads=1", seeds="7")
    assert sweep.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{sys.executable} {TRAIN_PY} --env CartPole-v1 --variant {variant} --seed 7 --preset "
        "classic --total-steps 2000 --set probes.enabled=false --set eval.interval=0 --set "
        f"train.threads=1 --logdir {fresh} --run-name CartPole-v1__{variant}__s7"
        for variant in ("dqn", "ln")
    ]
    assert not fresh.exists()


def test_a_failed_run_is_reported_with_its_log_and_the_others_finish(local_sweep, tmp_path):
    logdir, broken = tmp_path / "runs", "CartPole-v1__dqn__s1"
    (logdir / broken).mkdir(parents=True)
    (logdir / broken / "config.yaml").write_text(
        (local_sweep[0] / broken / "config.yaml").read_text()
    )
    (logdir / broken / "ckpt_000000001000.pt").write_bytes(b"not a checkpoint")
    args = grid_args(logdir, "--workers", "2", variants="dqn")
    done = run_sweep(*args)
    assert done.returncode == 1
    assert f"FAILED {broken} (exit 2)" in done.stderr and "    error:" in done.stderr
    assert "1/2 done, 1 failed" in done.stderr
    status = run_sweep(*args, "--status").stdout.splitlines()
    assert [row.split()[:2] for row in status[1:]] == [
        [broken, "failed"],
        ["CartPole-v1__dqn__s2", "done"],
    ]


def test_a_killed_launcher_loses_no_finished_run_and_the_rerun_resumes(tmp_path):
    logdir = tmp_path / "runs"
    args = grid_args(logdir, "--workers", "1", "--set", "train.checkpoint_interval=1000",
                     variants="dqn")  # fmt: skip
    first, second = "CartPole-v1__dqn__s1", "CartPole-v1__dqn__s2"
    launcher = subprocess.Popen([sys.executable, "sweep.py", *args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 400
        while not list_checkpoints(logdir / second) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list_checkpoints(logdir / second), "the second run never checkpointed"
    finally:
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
    finished = files_of(logdir / first)
    again = run_sweep(*args)
    assert again.returncode == 0, again.stderr
    assert starts(logdir) == {first: 1, second: 2}
    assert files_of(logdir / first) == finished
    resumed = [r for r in Ledger(logdir).records() if r["event"] == "start"][-1]
    assert resumed["run"] == second and resumed["step"] >= 1000
    assert int(list_checkpoints(logdir / second)[-1].stem.split("_")[1]) >= 2000


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the [ray] extra is absent")
def test_a_ray_sweep_finishes_every_run_once(tmp_path):
    logdir = tmp_path / "runs"
    done = run_sweep(*grid_args(logdir, "--backend", "ray", "--address", "local"))
    assert done.returncode == 0, done.stderr
    assert starts(logdir) == dict.fromkeys(NAMES, 1)
    for name in NAMES:
        assert int(list_checkpoints(logdir / name)[-1].stem.split("_")[1]) >= 2000
    again = run_sweep(*grid_args(logdir, "--backend", "ray", "--address", "local"))
    assert again.returncode == 0 and "4 already done, 0 to run" in again.stderr
    assert starts(logdir) == dict.fromkeys(NAMES, 1)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--grid", "nosuchgrid"], "Unknown grid 'nosuchgrid'"),
        (["--seeds", "1,x"], "'x' is not a seed"),
        (["--variants", "dqn,lnn"], "Unknown option 'lnn'"),
        (["--envs", "Pongg"], "Pongg"),
        (["--set", "agent.nolr=1"], "Unknown config key 'agent.nolr'"),
        (["--workers", "0"], "--workers 0"),
    ],
)
def test_bad_input_is_one_error_line_and_starts_nothing(change, named, tmp_path, capsys):
    args = dict(zip(["--variants", "--envs", "--seeds"], ["dqn", "CartPole-v1", "1"], strict=True))
    extra = list(change)
    if change[0] in args or change[0] == "--grid":
        args.pop("--variants" if change[0] == "--grid" else change[0])
    argv = [*sum(([k, v] for k, v in args.items()), []), *extra, "--logdir", str(tmp_path / "r")]
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and named in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_missing_ray_extra_is_one_error_line_naming_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; import sweep; sys.exit(sweep.main(["
            f"'--variants', 'dqn', '--envs', 'CartPole-v1', '--backend', 'ray', '--logdir', "
            f"{str(tmp_path)!r}]))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and ".[ray]" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_ledger_skips_a_line_torn_by_a_killed_launcher(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.write("start", "a", step=0)
    with ledger.path.open("a") as file:
        file.write('{"event": "end", "ru')
    assert [r["run"] for r in ledger.records()] == ["a"]
    assert json.loads(ledger.path.read_text().splitlines()[0])["step"] == 0
