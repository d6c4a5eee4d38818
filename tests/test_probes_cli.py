"""`python -m probes`: the probe table of saved networks, on states from their own game."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from agents import find_checkpoint, list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def probes_cli(*paths: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "probes", *paths, "--states", "16", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_probe_table_of_checkpoints_is_repeatable_and_keeps_every_column(pong_run, tmp_path):
    first = list_checkpoints(pong_run)[0]  # step 400; the run directory gives the newest, 800
    paths = [str(pong_run), str(first), str(pong_run)]
    result = probes_cli(*paths, out=tmp_path / "a.json")
    assert result.returncode == 0, result.stderr
    assert "dormant_fraction/torso.relu_conv1" in result.stdout
    columns = json.loads((tmp_path / "a.json").read_text())
    assert list(columns) == [str(pong_run), str(first), f"{pong_run} (2)"]
    # The same network on the same states; and again in another process (threads may reorder a
    # float sum there: 1e-12 relative was seen on the NTK's λ_min).
    assert columns[f"{pong_run} (2)"] == pytest.approx(columns[str(pong_run)], rel=1e-9)
    assert probes_cli(*paths, out=tmp_path / "b.json").returncode == 0
    again = json.loads((tmp_path / "b.json").read_text())
    assert list(again) == list(columns)
    for name, column in columns.items():
        assert again[name] == pytest.approx(column, rel=1e-9), name
    for path, column in zip(paths, columns.values(), strict=True):
        weights = load_checkpoint(find_checkpoint(Path(path)))["agent"]["online"]
        by_hand = math.sqrt(sum(w.double().square().sum().item() for w in weights.values()))
        assert column["param_norm"] == pytest.approx(by_hand, rel=1e-6)
        # 16 distinct states, the NTK on the run's 8: full rank, a finite condition number.
        assert column["ntk_rank"] == 8 and 1.0 <= column["ntk_condition"] < 1e8
        assert 1 <= column["feature_rank"] <= 16
    assert columns[str(first)] != columns[str(pong_run)]  # 400 and 800 are other networks


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
