"""Faults a long cluster run meets, injected for real: kill -9, corrupt and truncated checkpoints,
a full disk, a diverging learner, pickled code, a second Ctrl-C, bad input. Each test runs real
train.py processes on CartPole (the cheapest real task) and reads back the files they leave."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

import configs
import train
from agents import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
LOG_INTERVAL = 100


def classic(logdir: Path, total: int, *extra: str, name: str = "r") -> list[str]:
    """train.py arguments of a short CartPole run: updates from step 200, logs every 100 steps."""
    return ["--env", "CartPole-v1", "--preset", "classic", "--total-steps", str(total),
            "--run-name", name, "--logdir", str(logdir), "--set", "probes.enabled=false",
            "--set", "eval.interval=0", "--set", "agent.learning_starts=200",
            "--set", f"train.log_interval={LOG_INTERVAL}", *extra]  # fmt: skip


def start(args: list[str], **kwargs) -> subprocess.Popen:
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen(
        [sys.executable, "train.py", *args], cwd=ROOT, text=True, **{**pipes, **kwargs}
    )


def run_cli(args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    proc = start(args, **kwargs)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def scalars(run_dir: Path) -> dict[str, list]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def written_steps(run_dir: Path, tag: str) -> list[int]:
    """Every step `tag` was written at, over all event files, before any purge on reading."""
    files = sorted(run_dir.glob("events.out.tfevents.*"))
    events = [event for file in files for event in EventFileLoader(str(file)).Load()]
    return [e.step for e in events for value in e.summary.value if value.tag == tag]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temp_files(run_dir: Path) -> list[str]:
    return [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def is_finite(checkpoint: dict) -> bool:
    tensors = [t for t in checkpoint["agent"]["online"].values() if t.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"train.py exited ({proc.returncode}) before {what}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def three_checkpoints(tmp_path_factory) -> Path:
    """A finished run with checkpoints near steps 500, 1000 and 1500; tests work on copies."""
    logdir = tmp_path_factory.mktemp("base")
    args = classic(logdir, 1500, "--set", "train.checkpoint_interval=500")
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.main(args) == 0
    assert len(list_checkpoints(logdir / "r")) == 3
    return logdir / "r"


def copy_run(run_dir: Path, logdir: Path) -> Path:
    """A copy of a run under `logdir`, under the same name."""
    return Path(shutil.copytree(run_dir, logdir / run_dir.name))


# kill -9 -----------------------------------------------------------------------------------------


def test_kill_9_at_random_moments_loses_no_step(tmp_path):
    """Eleven processes, ten of them killed at a random moment after their first new checkpoint
    (every 300 steps; logs every 100): the run still reaches its last step, every newest
    checkpoint loads, and each log step is read back exactly once, though the killed processes
    logged some steps that their successors redid."""
    rng = random.Random(8)
    total, run_dir = 6_000, tmp_path / "r"
    command = classic(tmp_path, total, "--set", "train.checkpoint_interval=300")
    newest_steps = []
    for kill in range(10):
        # Requeued jobs rerun the same command (--run-name); a person resumes with --resume.
        args = command if kill % 2 == 0 else ["--resume", str(run_dir)]
        before = {p.name for p in list_checkpoints(run_dir)}
        proc = start(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        new = lambda: {p.name for p in list_checkpoints(run_dir)} - before  # noqa: B023, E731
        wait_for(new, 60, "a new checkpoint", proc)
        if kill == 0:  # once after a log past the checkpoint, whatever the load: a step redone
            wait_for(lambda: logged_past_checkpoint(run_dir), 60, "a log past it", proc)
        else:
            time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        proc.wait()
        newest = load_checkpoint(list_checkpoints(run_dir)[-1])  # the newest always loads
        newest_steps.append(newest["step"])
    assert newest_steps == sorted(newest_steps) and newest_steps[-1] < total
    result = run_cli(["--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(list_checkpoints(run_dir)[-1])["step"] >= total
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 11
    written = written_steps(run_dir, "charts/epsilon")
    assert len(written) > len(set(written))  # redone steps were written twice: purged on reading
    check_each_step_logged_once(scalars(run_dir), total)


def test_kill_9_of_a_three_seed_process_and_resume_loses_no_step(tmp_path):
    """Three seeds in one process (--seeds 1-3), killed three times after a new checkpoint of
    any seed, relaunched alternately by the same command and by --resume of one seed: every seed
    reaches the budget, its newest checkpoint loads, and each of its log steps is read back
    exactly once. The seeds' checkpoints fall at different moments (each counts its own steps),
    so a kill leaves them at different steps, and each resumes from its own."""
    rng = random.Random(3)
    total = 3_000
    runs = [tmp_path / f"r{seed}" for seed in (1, 2, 3)]
    command = classic(tmp_path, total, "--seeds", "1-3", "--set", "train.checkpoint_interval=300")
    command[command.index("--run-name") + 1] = "r{seed}"
    for kill in range(3):
        saved = [run for run in runs if run.exists() and list_checkpoints(run)]
        args = command if kill % 2 == 0 else ["--resume", str(saved[-1])]
        before = {run: set(list_checkpoints(run)) if run.exists() else set() for run in runs}
        proc = start(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        new = lambda: any(set(list_checkpoints(r)) - before[r] for r in runs if r.exists())  # noqa: B023, E731
        wait_for(new, 90, "a new checkpoint", proc)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        proc.wait()
        for run in runs:  # the newest checkpoint of each seed that has one always loads
            if list_checkpoints(run):
                assert load_checkpoint(list_checkpoints(run)[-1])["step"] < total
    result = run_cli(["--resume", str(runs[0])], timeout=180)
    assert result.returncode == 0, result.stderr
    for run in runs:
        assert load_checkpoint(list_checkpoints(run)[-1])["step"] >= total
        check_each_step_logged_once(scalars(run), total)


def logged_past_checkpoint(run_dir: Path) -> bool:
    """Whether an event file holds a log step past the newest checkpoint's step."""
    newest = int(list_checkpoints(run_dir)[-1].stem.removeprefix("ckpt_"))
    return max(written_steps(run_dir, "charts/epsilon"), default=0) > newest


def check_each_step_logged_once(tags: dict[str, list], total: int) -> None:
    """Every log boundary (a multiple of 100 crossed) appears once: no duplicate, no gap."""
    boundaries = list(range(1, total // LOG_INTERVAL + 1))
    for tag in ("charts/epsilon", "charts/sps"):
        steps = [e.step for e in tags[tag]]
        assert [s // LOG_INTERVAL for s in steps] == boundaries, tag
    # A resumed run refills its replay for 200 steps before updating: td_loss has those gaps.
    losses = [e.step for e in tags["losses/td_loss"]]
    assert losses == sorted(set(losses)) and losses[-1] // LOG_INTERVAL == total // LOG_INTERVAL


# corrupt, truncated and malicious checkpoints ----------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(
    damage, three_checkpoints, tmp_path, capsys
):
    run_dir = copy_run(three_checkpoints, tmp_path)
    older, bad = list_checkpoints(run_dir)[-2:]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncate" else os.urandom(len(data)))
    # --resume after truncation, the requeued job's own command after garbage.
    if damage == "truncate":
        args = ["--resume", str(run_dir), "--total-steps", "1700"]
    else:
        args = classic(tmp_path, 1700, "--set", "train.checkpoint_interval=500")
    assert train.main(args) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: Checkpoint {bad} could not")
    assert "Falling back to the previous checkpoint" in warnings[0]
    assert "weights_only" not in warnings[0]  # torch's advice to load code is not repeated
    # The run went on from the previous checkpoint to its new budget.
    resumed_from = load_checkpoint(three_checkpoints / older.name)
    final = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert final["step"] >= 1700 and final["agent"]["updates"] > resumed_from["agent"]["updates"]


def test_no_readable_checkpoint_is_a_clear_error(three_checkpoints, tmp_path):
    run_dir = copy_run(three_checkpoints, tmp_path)
    for path in list_checkpoints(run_dir):
        path.write_bytes(path.read_bytes()[:1000])
    result = run_cli(["--resume", str(run_dir)], timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert sum(line.startswith("warning:") for line in lines) == 3
    assert lines[-1].startswith(f"error: Run directory {run_dir} holds no readable checkpoint")


class Payload:
    """Unpickling this runs `open(marker, "w")`: code that would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_carrying_code_is_refused_and_never_runs(three_checkpoints, tmp_path):
    run_dir = copy_run(three_checkpoints, tmp_path / "with_good")
    marker = tmp_path / "payload_ran"
    good = load_checkpoint(list_checkpoints(run_dir)[-1])
    evil = run_dir / "ckpt_000000009999.pt"
    torch.save({**good, "agent": {**good["agent"], "extra": Payload(marker)}}, evil)
    assert not marker.exists()
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(evil, alone / evil.name)
    fell_back = run_cli(["--resume", str(run_dir)], timeout=60)
    assert fell_back.returncode == 0, fell_back.stderr
    assert (
        f"warning: Checkpoint {evil} could not be read: it holds pickled code" in fell_back.stderr
    )
    refused = run_cli(["--resume", str(alone)], timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "pickled code or objects (io.open)" in refused.stderr.splitlines()[-1]
    assert not marker.exists()


# a full disk -------------------------------------------------------------------------------------


def test_a_full_disk_while_checkpointing_is_named_and_leaves_the_previous_whole(
    three_checkpoints, tmp_path
):
    """The resumed process may write files up to half a checkpoint's size (RLIMIT_FSIZE, with
    SIGXFSZ ignored, so a write past it fails with EFBIG as on a full disk)."""
    run_dir = copy_run(three_checkpoints, tmp_path)
    before = {p.name: digest(p) for p in list_checkpoints(run_dir)}
    limit = min(p.stat().st_size for p in list_checkpoints(run_dir)) // 2

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = run_cli(["--resume", str(run_dir), "--total-steps", "2100"], preexec_fn=small_files)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.splitlines()[-1]
    assert re.match(rf"error: Cannot write checkpoint {run_dir}/ckpt_\d+\.pt: File too large", last)
    assert {p.name: digest(p) for p in list_checkpoints(run_dir)} == before
    assert load_checkpoint(list_checkpoints(run_dir)[-1])["step"] >= 1500
    assert temp_files(run_dir) == []


# a diverging learner -----------------------------------------------------------------------------


def test_a_diverging_run_stops_at_the_step_and_saves_no_nan(tmp_path, capsys):
    """Adam at lr 1e10 moves every weight by ~1e10 in its first update; the TD loss overflows."""
    args = classic(
        tmp_path, 3000, "--set", "agent.lr=1e10", "--set", "train.checkpoint_interval=200"
    )
    assert train.main(args) == 2
    err = capsys.readouterr().err
    found = re.search(r"^error: (td_loss|parameter \S+) is (nan|inf|-inf) at step (\d+)", err, re.M)
    assert found, err
    step = int(found.group(3))
    # Updates start at step 200; the first log boundary after them is at most 100 + 4 steps on.
    assert 200 <= step <= 200 + LOG_INTERVAL + 4
    saved = [load_checkpoint(p) for p in list_checkpoints(tmp_path / "r")]
    assert saved and all(is_finite(s) for s in saved)  # the good one, and no other
    assert max(s["step"] for s in saved) < step and temp_files(tmp_path / "r") == []


# a second Ctrl-C ---------------------------------------------------------------------------------

WRAPPER = """
import signal, sys, train
before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN if inherited ignored
status = train.main(sys.argv[1:])
restored = signal.getsignal(signal.SIGINT) is before
print("handlers restored" if restored else "handlers not restored")
sys.exit(status)
"""


def test_a_second_ctrl_c_during_the_final_save_still_flushes_and_restores(tmp_path):
    """A 4M-transition replay in the checkpoint makes the final save last ~0.2 s; the second
    SIGINT lands while its temp file is being written."""
    slow_save = [
        "replay.save_contents=true",
        "replay.capacity=4000000",
        "train.checkpoint_interval=100000000",
    ]
    args = classic(tmp_path, 10**8, *[f"--set={kv}" for kv in slow_save])
    run_dir = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    logged = lambda: max(written_steps(run_dir, "charts/epsilon"), default=0)  # noqa: E731
    wait_for(lambda: logged() >= 2 * LOG_INTERVAL, 120, "two logs", proc)  # not a time: any load
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: temp_files(run_dir), 60, "the final save", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT and "Traceback" not in err, err
    assert "handlers restored" in out
    stopped = int(re.search(r"Stopped at once at step (\d+)", err).group(1))
    assert stopped >= 2 * LOG_INTERVAL
    assert temp_files(run_dir) == [] and list_checkpoints(run_dir) == []
    # Every log boundary up to the stop was flushed to the event file.
    epsilon = [e.step // LOG_INTERVAL for e in scalars(run_dir)["charts/epsilon"]]
    assert epsilon == list(range(1, stopped // LOG_INTERVAL + 1))


# determinism -------------------------------------------------------------------------------------


def first_td_losses(run_dir: Path, count: int) -> list[float]:
    """The TD losses of the first `count` updates of a CartPole run, through Trainer's own loop."""
    config = configs.resolve(
        preset="classic",
        overrides={"env": {"id": "CartPole-v1"}},
        assignments=["probes.enabled=false", "eval.interval=0", "agent.learning_starts=200"],
    )
    trainer = train.Trainer([(config, run_dir, None)])
    losses: list[float] = []
    update = trainer.group.update

    def recorded(batches):
        metrics = update(batches)
        losses.append(metrics[0]["td_loss"].item())
        return metrics

    trainer.group.update = recorded
    try:
        while len(losses) < count:
            trainer.iteration()
    finally:
        trainer.runs[0].close()
    return losses[:count]


def test_the_same_seed_gives_the_same_td_losses_bit_for_bit(tmp_path):
    first = first_td_losses(tmp_path / "a", 200)
    second = first_td_losses(tmp_path / "b", 200)
    assert first == second and len(set(first)) > 100  # equal floats, not a constant


# bad input, fuzzed -------------------------------------------------------------------------------

KEYS = sorted(configs.load.flatten(configs.to_dict(configs.resolve())))
# YAML that parses oddly or not at all, separated by "|": empty, null, flows, anchors, tags.
ODD_YAML = (
    "|null|~|[]|{}|[1, x]|{a: 1}|true|1e400|-0|0x10|1_000|.inf|!!binary aGk=|&a [*a]|[120, 84, -1]"
    "|'1e-4'|{: }|*x|%|@|`|- - -|1e6|2**32|!!int x|!!float y|!!timestamp 2001-13-45|!!binary @"
    "|!!python/name:os.system|" + "[" * 600
).split("|")
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(ODD_YAML),
)
ASSIGNMENTS = st.one_of(
    st.tuples(st.sampled_from(KEYS), VALUES).map("=".join),
    st.text(max_size=20),
)
OPTIONS = configs.available("variants") + ["nstep3", "nstep0", "nstep999", "", " ", "+"]
VARIANTS = st.one_of(
    st.lists(st.sampled_from(OPTIONS), min_size=1, max_size=4).map("+".join),
    st.text(max_size=15),
)
ENV_IDS = st.one_of(
    st.sampled_from(["Pong", "pong", "ALE/Pong-v5", "CartPole-v1", "Breakout", "ALE/", "-v5"]),
    st.text(max_size=15),
)
FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def resolves_or_refuses(**kwargs) -> None:
    """configs.resolve gives a Config or a UserError (one message, printed without a traceback);
    anything else is a bug. Messages quote the input, newlines and all."""
    try:
        configs.resolve(**kwargs)
    except configs.UserError as error:
        assert str(error).strip()


@FUZZ
@given(assignments=st.lists(ASSIGNMENTS, min_size=1, max_size=3))
@example(assignments=["agent.lr=!!int x"])  # found by this test: PyYAML raised ValueError
@example(assignments=["agent.lr=!!int"])  # IndexError
def test_any_set_assignment_resolves_or_is_refused_clearly(assignments):
    resolves_or_refuses(assignments=assignments)


YAML_PIECES = ODD_YAML + ["agent:", " lr:", " 1e-4", "\n", "  ", "- ", "train: {", "}", "]", ": ",
                          "---", "...", "%YAML 1.1", "? ", "|", "\t", "'"]  # fmt: skip
YAML_TEXT = st.one_of(st.lists(st.sampled_from(YAML_PIECES), max_size=20).map("".join), st.text())


@FUZZ
@given(content=YAML_TEXT)
@example(content="!!timestamp 2001-13-45null")  # found by this test: PyYAML raised AttributeError
def test_any_config_file_resolves_or_is_refused_clearly(content, tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(content, errors="surrogateescape")
    resolves_or_refuses(config_file=str(path))


@FUZZ
@given(variant=VARIANTS)
def test_any_variant_string_resolves_or_is_refused_clearly(variant):
    resolves_or_refuses(variant=variant)


@settings(max_examples=60, deadline=None)
@given(env=ENV_IDS, variant=VARIANTS, assignment=ASSIGNMENTS)
def test_the_command_line_ends_every_bad_input_in_one_error_line(env, variant, assignment):
    """Through train.main up to the point a run would start: its directory cannot be made (its
    parent is a file), so valid flags end in that error, and bad flags in their own."""
    blocked = ROOT / "pyproject.toml" / "runs"
    argv = [f"--env={env}", f"--variant={variant}", f"--set={assignment}", f"--logdir={blocked}"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert train.main(argv) == 2
    assert err.getvalue().startswith("error: ") and "Traceback" not in err.getvalue()
