"""sweep.py end to end: real train.py runs on CartPole through the local pool and a real local Ray
cluster, the launcher killed mid-sweep and rerun, --status and --dry-run read back, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import scipy.stats

import report
import sweep
from agents import list_checkpoints
from sweeps.grid import Run, expand, format_seeds, parse_seeds
from sweeps.state import Ledger

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PY = str(ROOT / "train.py")
NAMES = ["CartPole-v1__dqn__s1", "CartPole-v1__ln__s1", "CartPole-v1__dqn__s2",
         "CartPole-v1__ln__s2"]  # fmt: skip
PACKED = [f"CartPole-v1__dqn__s{seed}" for seed in range(1, 6)]


def grid_args(logdir: Path, *extra: str, variants: str = "dqn,ln", seeds: str = "1,2") -> list[str]:
    """A 2 x 2 CartPole sweep of short runs (probes and evaluation phases off)."""
    return ["--variants", variants, "--envs", "CartPole-v1", "--seeds", seeds, "--preset",
            "classic", "--total-steps", "2000", "--set", "probes.enabled=false", "--set",
            "eval.interval=0", "--logdir", str(logdir), *extra]  # fmt: skip


def run_sweep(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "sweep.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def start_records(logdir: Path) -> list[dict]:
    return [record for record in Ledger(logdir).records() if record["event"] == "start"]


def newest(run_dir: Path) -> int:
    return int(list_checkpoints(run_dir)[-1].stem.split("_")[1])


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


def test_a_seed_list_is_written_as_ranges_that_parse_back():
    assert format_seeds([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
    assert parse_seeds(format_seeds([1, 2, 3, 5, 7, 8])) == [1, 2, 3, 5, 7, 8]


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


def break_run(logdir: Path, finished: Path) -> str:
    """Seed 1's run directory under `logdir`, with the config of the same run in `finished` and
    an unreadable checkpoint: train.py refuses it (exit 2). Returns its name."""
    broken = "CartPole-v1__dqn__s1"
    (logdir / broken).mkdir(parents=True)
    (logdir / broken / "config.yaml").write_text((finished / broken / "config.yaml").read_text())
    (logdir / broken / "ckpt_000000001000.pt").write_bytes(b"not a checkpoint")
    return broken


def test_a_failed_run_is_reported_with_its_log_and_the_others_finish(local_sweep, tmp_path):
    logdir = tmp_path / "runs"
    broken = break_run(logdir, local_sweep[0])
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
        *[
            (
                ["--seeds-per-process", bad],
                f"--seeds-per-process {bad}: give a whole number of seeds, 1 or more",
            )
            for bad in ("0", "-2", "two", "1.5")
        ],
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


def launcher(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "sweep.py", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the sweep ended before {what}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_an_extended_then_interrupted_run_is_partial_for_the_sweep_and_the_report(tmp_path):
    """A finished 300-step run, swept again to 100,000 steps and stopped: its config.yaml, the
    sweep and the report all say partial at the new budget (the report used to read 300)."""
    from analysis.runs import read_run

    logdir, name = tmp_path / "runs", "CartPole-v1__dqn__s1"
    args = grid_args(logdir, "--set", "train.checkpoint_interval=500", variants="dqn", seeds="1")
    first = run_sweep(*args, "--total-steps", "300")
    assert first.returncode == 0, first.stderr
    assert read_run(logdir / name).partial is False
    args += ["--total-steps", "100000"]
    again = launcher(*args)
    newest = lambda: list_checkpoints(logdir / name)[-1].name  # noqa: E731
    wait_for(lambda: newest() > "ckpt_000000000300.pt", "a checkpoint past 300", again)
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=120) == 128 + signal.SIGTERM, again.stderr.read()
    run = read_run(logdir / name)
    assert run.total_steps == 100_000 and run.partial and 500 <= run.step < 100_000
    status = run_sweep(*args, "--status").stdout.splitlines()
    assert status[1].split()[:3] == [name, "partial", f"{run.step:,}/100,000"]


def test_a_run_killed_before_its_first_checkpoint_is_kept_across_relaunches(tmp_path):
    """Its directory (events, config) is set aside, whole, and listed; the run starts again."""
    logdir, name = tmp_path / "runs", "CartPole-v1__dqn__s1"
    args = grid_args(logdir, "--set", "train.checkpoint_interval=100000", variants="dqn",
                     seeds="1")  # fmt: skip
    sweeping = launcher(*args, "--total-steps", "100000")
    events = lambda: list((logdir / name).glob("events.out.tfevents.*"))  # noqa: E731
    wait_for(lambda: events() and events()[0].stat().st_size > 2000, "its events", sweeping)
    pid = next(r["pid"] for r in Ledger(logdir).records() if r["event"] == "start")
    os.kill(pid, signal.SIGKILL)
    assert sweeping.wait(timeout=120) == 1
    assert not list_checkpoints(logdir / name)
    written = {p.name: p.read_bytes() for p in (logdir / name).iterdir() if p.name != ".lock"}
    done = run_sweep(*args)
    assert done.returncode == 0, done.stderr
    aside = logdir / ".sweep" / "aside" / f"{name}-1"
    assert {p.name: p.read_bytes() for p in aside.iterdir() if p.name != ".lock"} == written
    assert int(list_checkpoints(logdir / name)[-1].stem.split("_")[1]) >= 2000
    status = run_sweep(*args, "--status").stdout
    assert f".sweep/aside/{name}-1  steps logged: " in status


def test_a_resumed_run_gets_the_thread_share_of_this_launch(local_sweep, tmp_path):
    """A run first started with 16 threads (one worker on 16 cores), resumed by a launch that
    shares the cores out one thread a run, runs with 1, not with its old 16."""
    from sweeps.grid import Options
    from sweeps.plan import make_jobs

    name = "CartPole-v1__dqn__s1"
    shutil.copytree(local_sweep[0] / name, tmp_path / name)
    config = tmp_path / name / "config.yaml"
    config.write_text(config.read_text().replace("threads: 1", "threads: 16"))
    sets = ("probes.enabled=false", "eval.interval=0")
    options = Options(tmp_path, "classic", None, 4000, sets)
    (job,) = make_jobs(expand(["CartPole-v1"], ["dqn"], [1]), options, threads=1)
    assert not any(a.startswith("train.threads=") and a != "train.threads=1" for a in job.sets)


def test_a_ray_task_forwards_every_cancel_to_its_run_and_returns_its_exit(tmp_path):
    """The task body under two cancels (KeyboardInterrupt, as ray.cancel delivers them) 0.3 s
    apart, past Popen.wait's own 0.25 s grace: the task forwards them and returns the run's exit
    status after its checkpoint (before, the second escaped the task, the run unwaited for)."""
    import threading

    from sweeps.ray_backend import execute

    logdir, name = tmp_path / "runs", "CartPole-v1__dqn__s1"
    argv = [sys.executable, TRAIN_PY, "--env", "CartPole-v1", "--preset", "classic",
            "--total-steps", "1000000", "--set", "train.checkpoint_interval=500", "--logdir",
            str(logdir), "--run-name", name]  # fmt: skip
    running = threading.Event()

    def interrupt(_signum: int, _frame: object) -> None:
        if running.is_set():  # a cancel that lands after the task returned is not the task's
            raise KeyboardInterrupt

    def cancel_twice() -> None:
        deadline = time.monotonic() + 300
        while not list_checkpoints(logdir / name) and time.monotonic() < deadline:
            time.sleep(0.2)
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        running.set()
        threading.Thread(target=cancel_twice, daemon=True).start()
        result = execute(argv, [str(logdir / name)], str(tmp_path / "run.log"))
        running.clear()
        time.sleep(0.4)
    finally:
        signal.signal(signal.SIGINT, previous)
    # 128 + 15 from train.py, or -15 when the second lands after train.py put back the default
    # handlers on its way out: both are a stop after a checkpoint to the sweep (STOPPED).
    assert result["rc"] in (128 + signal.SIGTERM, -signal.SIGTERM), tmp_path / "run.log"
    assert f"SIGTERM: stopped {logdir / name} at step" in (tmp_path / "run.log").read_text()


def python_processes(needle: str) -> list[int]:
    """Pids of this machine's processes whose command line holds `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def parent_of(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the [ray] extra is absent")
def test_a_killed_ray_worker_is_retried_by_one_writer_that_resumes_its_final_checkpoint(tmp_path):
    """kill -9 of the Ray worker mid-run: its train.py gets SIGTERM and writes a final
    checkpoint; the retried task's train.py waits for it (the run directory's lock) and resumes
    from exactly that step, and the run finishes."""
    logdir, name = tmp_path / "runs", "CartPole-v1__dqn__s1"
    args = grid_args(logdir, "--backend", "ray", "--address", "local", "--set",
                     "train.checkpoint_interval=1000", "--total-steps", "8000", variants="dqn",
                     seeds="1")  # fmt: skip
    sweeping = launcher(*args)
    wait_for(lambda: list_checkpoints(logdir / name), "the run's first checkpoint", sweeping)
    (first,) = python_processes(f"--logdir\0{logdir}\0--run-name\0{name}")
    os.kill(parent_of(first), signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{first}").exists(), "the first train.py to end", sweeping)
    assert sweeping.wait(timeout=300) == 0, sweeping.stderr.read()
    log = (logdir / ".sweep" / f"{name}.log").read_text()
    stopped = re.search(rf"SIGTERM: stopped {re.escape(str(logdir / name))} at step (\d+)", log)
    assert stopped, log
    assert f"resuming {logdir / name} at step {int(stopped.group(1)):,}" in log
    assert int(list_checkpoints(logdir / name)[-1].stem.split("_")[1]) >= 8000


def packed_args(logdir: Path, *extra: str, per_process: str = "5") -> list[str]:
    """Seeds 1-5 of dqn on CartPole, packed into processes of `per_process` seeds."""
    return grid_args(logdir, "--seeds-per-process", per_process, *extra, variants="dqn",
                     seeds="1-5")  # fmt: skip


@pytest.fixture(scope="module")
def packed_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    logdir = tmp_path_factory.mktemp("packed") / "runs"
    return logdir, run_sweep(*packed_args(logdir))


def test_five_seeds_packed_into_one_process_are_five_ordinary_runs_to_the_report(
    packed_sweep, tmp_path
):
    """One train.py process (one pid in the ledger, one shared log) writes five run directories,
    which the report counts as five seeds of one setting, each scored from its own events."""
    from test_report import by_hand_final

    logdir, done = packed_sweep
    assert done.returncode == 0, done.stderr
    assert "5 to run in 1 process" in done.stderr and "5/5 done, 0 failed" in done.stderr
    assert sorted(p.name for p in logdir.iterdir() if p.name != ".sweep") == PACKED
    launched = start_records(logdir)
    assert [r["run"] for r in launched] == PACKED and len({r["pid"] for r in launched}) == 1
    assert {r["log"] for r in launched} == {"CartPole-v1__dqn__s1-5.log"}
    assert {r["run"]: r["rc"] for r in Ledger(logdir).records() if r["event"] == "end"} == (
        dict.fromkeys(PACKED, 0)
    )
    assert all(newest(logdir / name) >= 2000 for name in PACKED)
    assert report.main([str(logdir), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    label = "dqn [classic / train.total_steps=2000]"
    runs = sorted(summary["runs"], key=lambda r: r["seed"])
    assert [(r["name"], r["seed"], r["setting"]) for r in runs] == [
        (name, seed, label) for seed, name in enumerate(PACKED, start=1)
    ]
    assert summary["partial_runs"] == summary["skipped"] == summary["conflicts"] == []
    finals = [by_hand_final(logdir / name) for name in PACKED]
    assert [r["final_return"] for r in runs] == pytest.approx(finals, abs=1e-9)
    entry = summary["aggregates"]["CartPole-v1"]["variants"][label]
    assert entry["runs"] == 5
    assert entry["iqm"]["value"] == pytest.approx(scipy.stats.trim_mean(finals, 0.25))


def test_rerunning_a_packed_sweep_with_a_larger_budget_resumes_every_seed(packed_sweep, tmp_path):
    logdir = tmp_path / "runs"
    shutil.copytree(packed_sweep[0], logdir)
    reached = {name: newest(logdir / name) for name in PACKED}
    again = run_sweep(*packed_args(logdir, "--total-steps", "3000"))
    assert again.returncode == 0, again.stderr
    resumed = start_records(logdir)[len(PACKED) :]
    assert {r["run"]: r["step"] for r in resumed} == reached
    assert len({r["pid"] for r in resumed}) == 1
    log = (logdir / ".sweep" / "CartPole-v1__dqn__s1-5.log").read_text()
    for name in PACKED:
        assert f"resuming {logdir / name} at step {reached[name]:,}" in log
        assert newest(logdir / name) >= 3000
    assert not (logdir / ".sweep" / "aside").exists()


def test_the_exit_status_of_a_failed_process_is_each_of_its_runs(packed_sweep, tmp_path):
    """Seed 1's unreadable checkpoint stops the process of seeds 1-2 at its start: both runs
    end in its exit status, so both are failed, and the error is shown once, from their log."""
    logdir = tmp_path / "runs"
    broken = break_run(logdir, packed_sweep[0])
    args = packed_args(logdir, "--seeds", "1,2", per_process="2")
    done = run_sweep(*args)
    assert done.returncode == 1
    log = logdir / ".sweep" / "CartPole-v1__dqn__s1-2.log"
    assert f"FAILED CartPole-v1__dqn__s1-2 (exit 2); end of {log}:" in done.stderr
    assert done.stderr.count("    error:") == 1 and broken in log.read_text()
    assert "0/2 done, 2 failed" in done.stderr
    ends = [(r["run"], r["rc"]) for r in Ledger(logdir).records() if r["event"] == "end"]
    assert ends == [(broken, 2), ("CartPole-v1__dqn__s2", 2)]
    status = run_sweep(*args, "--status").stdout.splitlines()
    assert [row.split()[:2] for row in status[1:]] == [
        [broken, "failed"],
        ["CartPole-v1__dqn__s2", "failed"],
    ]


def test_only_unfinished_runs_are_packed_k_at_a_time_in_seed_order(packed_sweep, capsys):
    """Seeds 1-5 of dqn are done: dqn's 6-9 and ln's 1-9 are packed three at a time, each
    (game, variant) apart, and the processes start seed-major, as single runs do."""
    logdir = packed_sweep[0]
    argv = grid_args(logdir, "--seeds-per-process", "3", "--dry-run", seeds="1-9")
    assert sweep.main(argv) == 0

    def command(variant: str, seeds: str) -> str:
        one = seeds.isdigit()
        name = f"CartPole-v1__{variant}__s" + (seeds if one else "{seed}")
        return (f"{sys.executable} {TRAIN_PY} --env CartPole-v1 --variant {variant} "
                f"{'--seed' if one else '--seeds'} {seeds} --preset classic --total-steps 2000 "
                f"--set probes.enabled=false --set eval.interval=0 --logdir {logdir} --run-name "
                + (name if one else f"'{name}'"))  # fmt: skip

    assert capsys.readouterr().out.splitlines() == [
        command("ln", "1-3"),
        command("ln", "4-6"),
        command("dqn", "6-8"),
        command("ln", "7-9"),
        command("dqn", "9"),
    ]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the [ray] extra is absent")
def test_a_ray_task_trains_a_pack_of_seeds_in_one_process(tmp_path):
    """K = 2 on Ray: seeds 1-2 of dqn are one task, whose one train.py writes both runs; the
    ledger still has a start and an end for each run, naming the log they share."""
    logdir, names = tmp_path / "runs", PACKED[:2]
    args = grid_args(logdir, "--backend", "ray", "--address", "local", "--seeds-per-process", "2",
                     variants="dqn")  # fmt: skip
    done = run_sweep(*args)
    assert done.returncode == 0, done.stderr
    assert "2 to run in 1 process on Ray" in done.stderr
    assert [(r["run"], r["log"], r["backend"]) for r in start_records(logdir)] == [
        (name, "CartPole-v1__dqn__s1-2.log", "ray") for name in names
    ]
    ends = [(r["run"], r["rc"]) for r in Ledger(logdir).records() if r["event"] == "end"]
    assert ends == [(name, 0) for name in names]
    log = (logdir / ".sweep" / "CartPole-v1__dqn__s1-2.log").read_text()
    assert log.count("# sweep: ray task on ") == 1
    for name in names:
        assert f"checkpoint {logdir / name}/ckpt_" in log and newest(logdir / name) >= 2000
