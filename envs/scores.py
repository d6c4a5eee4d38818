"""Human-normalised Atari scores: (score - random) / (human - random), with the per-game reference
figures of Mnih et al. (2015) and Badia et al. (2020) shipped beside this file."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

SCORES_FILE = Path(__file__).resolve().parent / "atari_human_random_scores.csv"


@cache
def reference_scores() -> dict[str, tuple[float, float]]:
    """{rom id: (random, human)} for the 57 games."""
    lines = [line for line in SCORES_FILE.read_text().splitlines() if not line.startswith("#")]
    return {
        row["game"]: (float(row["random"]), float(row["human"])) for row in csv.DictReader(lines)
    }


def human_normalized(game: str, score: float) -> float | None:
    """(score - random) / (human - random) for a ROM id, or None for a game without figures."""
    if game not in reference_scores():
        return None
    random, human = reference_scores()[game]
    return (score - random) / (human - random)
