"""Checkpoints: atomic, pruned, loaded as data, with clear errors for missing or corrupt files."""

from __future__ import annotations

import os
import resource
import signal
import stat
import tempfile

import pytest
import torch

from agents import find_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from agents.checkpoint import CheckpointWriteError, NonFiniteError, checkpoint_path, load_latest
from configs import UserError


def state(step: int) -> dict:
    return {"step": step, "config": {}, "agent": {"w": torch.full((3,), float(step))}}


def test_only_the_newest_checkpoints_are_kept_and_read_back(tmp_path):
    for step in (100, 200, 300, 400):
        save_checkpoint(tmp_path, step, state(step), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "ckpt_000000000300.pt",
        "ckpt_000000000400.pt",
    ]
    latest = load_checkpoint(find_checkpoint(tmp_path))
    assert latest["step"] == 400 and latest["agent"]["w"].tolist() == [400.0] * 3


def test_a_half_written_temp_file_is_never_taken_as_latest(tmp_path):
    save_checkpoint(tmp_path, 100, state(100), keep=3)
    (tmp_path / ".ckpt-crash.tmp").write_bytes(b"\x80\x02partial")  # a write killed midway
    assert find_checkpoint(tmp_path).name == "ckpt_000000000100.pt"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp") and "crash" not in p]


def test_a_corrupt_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "ckpt_000000000100.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match=r"ckpt_000000000100\.pt could not be read.*corrupt"):
        load_checkpoint(path)


def test_a_truncated_checkpoint_names_the_file(tmp_path):
    path = save_checkpoint(tmp_path, 100, state(100), keep=3)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="could not be read"):
        load_checkpoint(path)


class Payload:
    """Stands for code smuggled into a pickle: unpickling it would import and build this class."""


def test_code_in_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "config": {}, "agent": Payload()}, path)
    with pytest.raises(UserError, match=r"evil\.pt could not be read: it holds pickled code"):
        load_checkpoint(path)


def test_missing_paths_and_empty_runs_are_named(tmp_path):
    with pytest.raises(UserError, match=r"nothing does not exist"):
        find_checkpoint(tmp_path / "nothing")
    with pytest.raises(UserError, match=r"holds no checkpoint"):
        find_checkpoint(tmp_path)


def test_a_foreign_torch_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(UserError, match="not a plasticity-suite checkpoint"):
        load_checkpoint(path)


def test_load_latest_falls_back_past_unreadable_checkpoints(tmp_path):
    for step in (100, 200, 300):
        save_checkpoint(tmp_path, step, state(step), keep=3)
    newest, middle = list_checkpoints(tmp_path)[:0:-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    middle.write_bytes(b"garbage")
    skipped = []
    path, latest = load_latest(tmp_path, on_skip=lambda p, reason: skipped.append((p, reason)))
    assert (path.name, latest["step"]) == ("ckpt_000000000100.pt", 100)
    assert [p for p, _ in skipped] == [newest, middle]
    assert all(f"{p} could not be read" in reason for p, reason in skipped)


def test_load_latest_with_nothing_readable_names_every_file(tmp_path):
    for step in (100, 200):
        (tmp_path / f"ckpt_{step:012d}.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"holds no readable checkpoint.*200\.pt.*100\.pt"):
        load_latest(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no checkpoint"):
        load_latest(empty)


def test_a_state_holding_nan_or_inf_is_never_written(tmp_path):
    save_checkpoint(tmp_path, 100, state(100), keep=3)
    for bad in (float("nan"), float("inf")):
        diverged = state(200)
        diverged["agent"]["w"][1] = bad
        with pytest.raises(NonFiniteError, match=rf"ckpt_000000000200\.pt: agent\.w is {bad}"):
            save_checkpoint(tmp_path, 200, diverged, keep=3)
    assert sorted(os.listdir(tmp_path)) == ["ckpt_000000000100.pt"]


def test_a_checkpoint_holding_nan_is_not_loaded(tmp_path):
    path = tmp_path / "ckpt_000000000100.pt"
    torch.save({"step": 100, "config": {}, "agent": {"w": torch.tensor([1.0, float("nan")])}}, path)
    with pytest.raises(UserError, match=r"could not be read: agent\.w is nan"):
        load_checkpoint(path)


def test_a_failed_write_names_the_file_and_leaves_nothing(tmp_path):
    """RLIMIT_FSIZE with SIGXFSZ ignored: writes past 4 kB fail with EFBIG, as on a full disk."""
    save_checkpoint(tmp_path, 100, state(100), keep=3)
    big = {"step": 200, "config": {}, "agent": {"w": torch.zeros(100_000)}}
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    try:
        with pytest.raises(CheckpointWriteError, match=r"ckpt_000000000200\.pt: File too large"):
            save_checkpoint(tmp_path, 200, big, keep=3)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert sorted(os.listdir(tmp_path)) == ["ckpt_000000000100.pt"]
    assert load_checkpoint(tmp_path / "ckpt_000000000100.pt")["step"] == 100


def test_a_save_removes_temp_files_and_checkpoints_of_later_steps(tmp_path):
    """After a resume that fell back past an unreadable ckpt_300, the run redoes steps 200-300:
    its next checkpoint replaces the later one, which would otherwise be taken as newest."""
    for step in (100, 200, 300):
        save_checkpoint(tmp_path, step, state(step), keep=3)
    (tmp_path / ".ckpt-killed.tmp").write_bytes(b"half a checkpoint")
    save_checkpoint(tmp_path, 250, state(250), keep=3)
    assert sorted(os.listdir(tmp_path)) == [f"ckpt_{s:012d}.pt" for s in (100, 200, 250)]


def test_a_checkpoint_gets_the_mode_the_umask_gives_other_files(tmp_path):
    previous = os.umask(0o027)
    try:
        save_checkpoint(tmp_path, 5, {"step": 5}, keep=3)
    finally:
        os.umask(previous)
    mode = stat.S_IMODE(checkpoint_path(tmp_path, 5).stat().st_mode)
    assert mode == 0o640  # 0666 less umask 027: readable by the group, as config.yaml would be


def test_a_ctrl_c_landing_as_the_temp_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    """The fault test's second Ctrl-C is sent the moment the temp file appears, so on a slow CPU
    it can land before write_atomic knows the file's name: that file must still be removed."""
    made = tempfile.mkstemp

    def mkstemp_then_ctrl_c(**kwargs):
        made_now = made(**kwargs)
        signal.raise_signal(signal.SIGINT)  # the signal arrives before mkstemp's caller resumes
        return made_now

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 5, state(5), keep=3)
    assert os.listdir(tmp_path) == []
