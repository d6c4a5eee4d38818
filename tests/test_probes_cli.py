"""`python -m probes`: the probe table of saved networks, on states from their own game."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_probe_table_of_a_checkpoint(pong_run, tmp_path):
    out = tmp_path / "probes.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "probes",
            str(pong_run),
            str(pong_run),
            "--states",
            "16",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "dormant_fraction/torso.relu_conv1" in result.stdout
    figures = json.loads(out.read_text())[str(pong_run)]
    # Nature CNN: 32 + 64 + 64 channels and 512 features are the units pooled for the network.
    assert 0.0 <= figures["dormant_fraction"] <= 1.0
    assert 1 <= figures["feature_rank"] <= 16  # at most the number of states
    assert figures["param_norm"] > 0 and figures["ntk_condition"] >= 1.0


def test_a_missing_checkpoint_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "probes", str(tmp_path / "none")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not exist" in result.stderr
