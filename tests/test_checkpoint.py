"""Checkpoints: atomic, pruned, loaded as data, with clear errors for missing or corrupt files."""

from __future__ import annotations

import os

import pytest
import torch

from agents import find_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
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
    with pytest.raises(UserError, match=r"evil\.pt could not be read"):
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
