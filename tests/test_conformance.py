"""The README's conformance table says what the code does: every row's `ours` is read back from
the resolved config (or the built network and optimiser), and every row whose two values differ
names the difference it keeps."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import DQNAgent, build_agent
from configs import Config, resolve
from envs import EnvSpec
from networks import NoisyLinear

README = Path(__file__).resolve().parents[1] / "README.md"
BREAKOUT = EnvSpec("Breakout", True, (4, 84, 84), np.dtype("uint8"), 4, 1)


def table_rows(name: str) -> list[dict[str, str]]:
    """The rows between the README's `<!-- name:begin/end -->` markers, as {column: cell}."""
    text = README.read_text()
    block = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert block, f"README.md has no {name} table"
    lines = [line for line in block.group(1).splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return [dict(zip(header, row, strict=True)) for row in rows]


def config_value(config: Config, key: str) -> object:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def built_value(agent: DQNAgent, key: str) -> str:
    """What the built network and optimiser say, for the keys no config key holds."""
    if key == "torso.features":
        return str(agent.online.torso.fc.in_features)
    if key == "noisy.layers":
        names = [n for n, m in agent.online.named_modules() if isinstance(m, NoisyLinear)]
        return ", ".join(names)
    if key == "adam.betas":
        return ", ".join(str(b) for b in agent.optimizer.param_groups[0]["betas"])
    if key == "ln.shape":
        return ", ".join(str(n) for n in agent.online.torso.norm_conv1.normalized_shape)
    raise KeyError(key)


def same(cell: str, value: object) -> bool:
    """A table cell against a value: numbers as numbers, booleans as true/false, text as text."""
    if isinstance(value, bool):
        return cell == str(value).lower()
    if isinstance(value, int | float):
        return float(cell) == float(value)
    return cell == str(value)


BASELINES, OPTIONS = table_rows("conformance"), table_rows("options")
BUILT = ("torso.features", "noisy.layers", "adam.betas", "ln.shape")


def test_the_tables_cover_each_baseline_and_plasticity_option_with_its_own_rows() -> None:
    assert {row["variant"] for row in BASELINES} == {"dqn", "c51", "rainbow"}
    assert {row["variant"] for row in OPTIONS} == {"ln", "l2", "wd"}
    keys = [(row["variant"], row["key"]) for row in BASELINES + OPTIONS]
    assert len(keys) == len(set(keys)), "a (variant, key) is listed twice"


@pytest.mark.parametrize("row", BASELINES + OPTIONS, ids=lambda r: f"{r['variant']}:{r['key']}")
def test_each_row_is_what_the_code_does(row: dict[str, str]) -> None:
    config = resolve(variant=row["variant"])
    if row["key"] in BUILT:
        agent = build_agent(config, BREAKOUT, torch.device("cpu"))
        assert row["ours"] == built_value(agent, row["key"])
    else:
        assert same(row["ours"], config_value(config, row["key"])), row
    theirs = row.get("Dopamine", row.get("source"))
    if row["ours"] != theirs:
        assert row["kept difference"], f"{row['variant']} {row['key']} differs and says not why"
