"""Shared fixtures: one real smoke run on Pong that several test files read."""

from __future__ import annotations

from pathlib import Path

import pytest

import train


def only_run(logdir: Path) -> Path:
    (run_dir,) = list(logdir.iterdir())
    return run_dir


@pytest.fixture(scope="session")
def pong_run(tmp_path_factory) -> Path:
    """A smoke run on Pong with a short episode cap, so that whole games finish and are logged."""
    logdir = tmp_path_factory.mktemp("runs")
    argv = [
        "--env",
        "Pong",
        "--preset",
        "smoke",
        "--logdir",
        str(logdir),
        "--seed",
        "3",
        "--set",
        "env.max_episode_frames=1200",
        "--set",
        "probes.fit_interval=800",
        "--set",
        "replay.save_contents=true",
    ]
    assert train.main(argv) == 0
    return only_run(logdir)


LONGEST_FIRST = ("test_lab.py", "test_learning.py", "test_sweep.py", "test_minatar.py")
"""The files that take longest (real learning runs and Ray, minutes each), longest first: with one
test file per worker (`--dist loadfile`, and `--no-loadscope-reorder`, which keeps this order
instead of xdist's by number of tests; pyproject) the two workers start on the two longest, then
each takes the next, instead of the last long file keeping one worker busy alone at the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order otherwise kept
