"""agents.rundir: a run directory's text files (config.yaml, wandb_id) written atomically."""

from __future__ import annotations

import os
import signal
import stat
import tempfile

import pytest

from agents.rundir import write_text


def test_a_text_file_is_replaced_whole_with_an_ordinary_files_mode(tmp_path):
    previous = os.umask(0o027)
    try:
        write_text(tmp_path / "config.yaml", "old\n")
        write_text(tmp_path / "config.yaml", "new\n")
    finally:
        os.umask(previous)
    assert os.listdir(tmp_path) == ["config.yaml"]
    assert (tmp_path / "config.yaml").read_text() == "new\n"
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == 0o640


def test_a_ctrl_c_landing_as_the_temp_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    """As for checkpoints (test_checkpoint): the signal, sent the moment the temp file appears,
    lands before write_text knows its name; the file must still be removed."""
    made = tempfile.mkstemp

    def mkstemp_then_ctrl_c(**kwargs):
        made_now = made(**kwargs)
        signal.raise_signal(signal.SIGINT)
        return made_now

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_text(tmp_path / "config.yaml", "text\n")
    assert os.listdir(tmp_path) == []
