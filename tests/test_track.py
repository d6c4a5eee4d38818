"""--track: W&B runs written offline (WANDB_MODE=offline) and read back from their .wandb files.

The offline run's data is read from its transaction log, the `.wandb` file, which wandb 0.31 no
longer ships a Python reader for (wandb.sdk.internal.datastore is gone; wandb.Api needs the
server): it is a LevelDB-style log (a 7-byte header `:W&B` + magic + version, then 32 KiB blocks of
chunks with a 7-byte crc/length/type header) of wandb_internal_pb2.Record protobufs, which `records`
below rebuilds. The simplest robust reading: the protobuf schema is wandb's own.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import evaluate
import train
from agents import list_checkpoints, load_checkpoint

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BLOCK, FULL, LAST = 32768, 1, 4


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Iterator[Path]:
    """W&B offline, its files under tmp_path/wandb."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield tmp_path / "wandb"
    wandb.teardown()  # wandb reads WANDB_DIR once a process: the next test's is read afresh


def records(path: Path):
    """The Record protobufs of a .wandb transaction log, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, payload = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            payload = b""
            yield record


def offline_runs(wandb_dir: Path, run_id: str) -> list[list]:
    """The records of each offline session of the W&B run `run_id`, oldest first. run.finish()
    returns before wandb's service has written the last records: its teardown waits for them."""
    wandb.teardown()
    files = sorted(wandb_dir.glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    return [list(records(f)) for f in files]


def wandb_scalars(sessions: list[list]) -> list[tuple[str, int, float]]:
    """(tag, global_step, value) of every logged value, W&B's own keys (`_step`, ...) left out."""
    rows = []
    for session in sessions:
        for record in session:
            if record.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
                step = int(json.loads(items.pop("global_step")))
                rows += [(k, step, json.loads(v)) for k, v in items.items() if k[0] != "_"]
    return sorted(rows)


def run_record(sessions: list[list]):
    return next(r.run for r in sessions[-1] if r.WhichOneof("record_type") == "run")


def tensorboard_scalars(run_dir: Path) -> list[tuple[str, int, float]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    return sorted((t, e.step, e.value) for t in tags for e in events.Scalars(t))


def assert_same_scalars(tensorboard: list, wandb: list) -> None:
    """Same tags at the same steps, the same values (TensorBoard keeps float32)."""
    assert [(t, s) for t, s, _ in wandb] == [(t, s) for t, s, _ in tensorboard]
    for (tag, step, ours), (_, _, theirs) in zip(wandb, tensorboard, strict=True):
        assert math.isclose(ours, theirs, rel_tol=1e-6, abs_tol=1e-6), (tag, step, ours, theirs)


def cartpole(logdir: Path, total: int, *extra: str) -> list[str]:
    """A short CartPole run whose probes log (their step-0 baseline comes after later steps)."""
    return ["--env", "CartPole-v1", "--preset", "classic", "--logdir", str(logdir),
            "--run-name", "cartpole", "--total-steps", str(total), "--set", "eval.interval=0",
            "--set", "agent.learning_starts=400", "--set", "probes.interval=400",
            "--set", "train.log_interval=200", *extra]  # fmt: skip


def test_a_tracked_run_mirrors_its_events_and_a_resume_continues_its_wandb_run(offline, tmp_path):
    logdir = tmp_path / "runs"
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.main(cartpole(logdir, 1000, "--track", "--wandb-project", "first")) == 0
    run_dir = logdir / "cartpole"
    run_id = (run_dir / "wandb_id").read_text().strip()
    sessions = offline_runs(offline, run_id)
    assert len(sessions) == 1
    run = run_record(sessions)
    assert (run.run_id, run.display_name, run.run_group) == (run_id, "cartpole", "dqn")
    assert run.project == "first"
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["hparams"]["variant"] == "dqn"
    assert config["train"]["total_steps"] == 1000
    mirrored = wandb_scalars(sessions)
    assert {"charts/episodic_return", "losses/td_loss", "plasticity/dormant_fraction"} <= {
        tag for tag, _, _ in mirrored
    }
    assert_same_scalars(tensorboard_scalars(run_dir), mirrored)

    # Elsewhere than the run already is: W&B would start a second run under its id.
    resume = ["--resume", str(run_dir), "--total-steps", "1600", "--track"]
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert train.main([*resume, "--wandb-project", "second"]) == 2
    assert "--wandb-project second differs from first" in err.getvalue()
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.main(resume) == 0  # no flag: where it is
    assert (run_dir / "wandb_id").read_text().strip() == run_id
    sessions = offline_runs(offline, run_id)
    assert len(sessions) == 2  # the same W&B run, continued
    assert run_record(sessions).project == "first"
    assert [r.exit.exit_code for s in sessions for r in s if r.HasField("exit")] == [0, 0]
    assert max(step for _, step, _ in wandb_scalars(sessions[1:])) >= 1600
    assert_same_scalars(tensorboard_scalars(run_dir), wandb_scalars(sessions))


def test_a_tracked_sweep_gives_each_seed_of_a_process_its_own_wandb_run(offline, tmp_path):
    logdir = tmp_path / "runs"
    args = ["--variants", "dqn", "--envs", "CartPole-v1", "--seeds", "1,2", "--preset",
            "classic", "--total-steps", "600", "--set", "probes.enabled=false", "--set",
            "eval.interval=0", "--logdir", str(logdir), "--seeds-per-process", "2",
            "--track", "--wandb-project", "proj", "--wandb-group", "grp"]  # fmt: skip
    dry = subprocess.run([sys.executable, "sweep.py", *args, "--dry-run"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "--track --wandb-project proj --wandb-group grp" in dry.stdout, dry.stderr
    done = subprocess.run([sys.executable, "sweep.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    ids = set()
    for seed in (1, 2):
        run_dir = logdir / f"CartPole-v1__dqn__s{seed}"
        run_id = (run_dir / "wandb_id").read_text().strip()
        sessions = offline_runs(offline, run_id)
        run = run_record(sessions)
        assert (run.display_name, run.run_group, run.project) == (run_dir.name, "grp", "proj")
        assert_same_scalars(tensorboard_scalars(run_dir), wandb_scalars(sessions))
        ids.add(run_id)
    assert len(ids) == 2


def test_an_evaluation_video_goes_to_the_runs_wandb_run(offline, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("pygame")
    logdir = tmp_path / "runs"
    with contextlib.redirect_stderr(io.StringIO()):
        assert train.main(cartpole(logdir, 400, "--set", "probes.enabled=false", "--track")) == 0
    run_dir = logdir / "cartpole"
    video = tmp_path / "play.mp4"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert evaluate.main([str(run_dir), "--episodes", "1", "--track"]) == 2
    assert (
        err.getvalue()
        == "error: --track logs evaluate.py's --video to W&B: give --video FILE too.\n"
    )
    with contextlib.redirect_stdout(io.StringIO()):
        argv = [str(run_dir), "--episodes", "1", "--video", str(video), "--track"]
        assert evaluate.main(argv) == 0
    sessions = offline_runs(offline, (run_dir / "wandb_id").read_text().strip())
    assert len(sessions) == 2
    # A media value is stored as its fields, each under the nested key (tag, field).
    logged = [
        {tuple(i.nested_key) or (i.key,): json.loads(i.value_json) for i in record.history.item}
        for record in sessions[1]
        if record.WhichOneof("record_type") == "history"
    ]
    (video_row,) = [row for row in logged if ("eval/video", "_type") in row]
    assert video_row["eval/video", "_type"] == "video-file"
    assert video_row["eval/video", "size"] == video.stat().st_size
    step = load_checkpoint(list_checkpoints(run_dir)[-1])["step"]  # 400 or past it by < 4 envs
    assert video_row["global_step",] == step and 400 <= step < 404


@pytest.mark.parametrize("script", ["train", "sweep"])
def test_a_missing_wandb_extra_is_one_error_line_naming_it(script, tmp_path, monkeypatch, capsys):
    """wandb absent (an import of it fails), not a stand-in for its behaviour."""
    monkeypatch.setitem(sys.modules, "wandb", None)
    logdir = tmp_path / "runs"
    if script == "train":
        assert train.main(cartpole(logdir, 400, "--track")) == 2
    else:
        import sweep

        argv = ["--variants", "dqn", "--envs", "CartPole-v1", "--logdir", str(logdir), "--track"]
        assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --track needs the optional [wandb] extra (wandb is not installed): "
        'pip install -e ".[wandb]"\n'
    )
    assert not logdir.exists()
