"""summary.json: per group of games and label (variant and setting) the aggregates with their CIs,
and every run with its final return; partial runs, directories not used and games run under
several settings listed apart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis import reference as dopamine
from analysis.runs import FINAL_RULE, Run
from analysis.stats import ScoreTable, baseline_label

if TYPE_CHECKING:  # build imports this module
    from analysis.build import Report


def run_entry(run: Run, in_aggregate: bool) -> dict:
    return {
        "name": run.name,
        "path": str(run.path),
        "game": run.game,
        "variant": run.variant,
        "setting": run.label,
        "differs": dict(run.setting.differs),
        "seed": run.seed,
        "step": run.step,
        "total_steps": run.total_steps,
        "partial": run.partial,
        "episodes": len(run.returns),
        "final_return": run.final_return,
        "final_score": run.final_score,
        "score": "human_normalized" if run.normalized else "raw_return",
        "in_aggregate": in_aggregate,
    }


AGGREGATION = {
    "human_normalized": "one group across the Atari games with human reference scores",
    "raw_return": "one group per game for every other game (MinAtar, classic control, Atari "
    "games without reference scores): raw returns are never pooled across games",
    "variants": "keyed by label: the variant and its setting, i.e. how its config differs from "
    "the variant's own (the nearest preset, then the keys beyond it)",
}


def summarize(report: Report) -> dict:
    """summary.json: the aggregates with their CIs per group and variant, and every run."""
    used = {id(r) for t in report.tables for rs in t.runs.values() for r in rs}
    return {
        "runs_dir": str(report.root),
        "baseline": report.baseline,
        "bootstrap": report.bootstrap.to_dict(),
        "final_return": FINAL_RULE,
        "aggregation": AGGREGATION,
        "aggregates": {t.group: table_entry(t, report) for t in report.tables},
        "runs": [with_reference(run_entry(r, id(r) in used), r, report) for r in report.finished],
        "partial_runs": [with_reference(run_entry(r, False), r, report) for r in report.partial],
        "skipped": [
            {"path": str(s.path), "kind": s.kind, "reason": s.reason} for s in report.skipped
        ],
        "conflicts": [
            {"game": c.game, "variant": c.variant, "settings": dict(c.settings)}
            for c in report.conflicts
        ],
        "videos": report.videos,
        "reference": reference_entry(report),
    }


def with_reference(entry: dict, run: Run, report: Report) -> dict:
    """The run's entry with, when the report draws a reference, `reference`: agent -> per
    iteration with episodes its mean return beside the reference's (None for a game without)."""
    if not report.reference:
        return entry
    found = report.comparisons.get(run.path)
    entry["reference"] = (
        None
        if found is None
        else {agent: [c.to_dict() for c in comparisons] for agent, comparisons in found.items()}
    )
    return entry


def reference_entry(report: Report) -> dict | None:
    """What the runs' `reference` entries compare with, and the games left without one."""
    if not report.reference:
        return None
    header = dopamine.table().header
    return {
        "source": header.get("source"),
        "licence": header.get("licence"),
        "agents": {a: dopamine.AGENTS[a] for a in report.reference},
        "iteration": "1M frames: agent steps s with floor(s * frame_skip / 1e6) = i",
        "return": "mean of the run's episodic returns logged at steps within the iteration",
        "reference_value": "a Dopamine run's average return over the training episodes of the "
        "iteration (raw score, sticky actions)",
        "percentile": dopamine.PERCENTILE_RULE,
        "games_without": report.without_reference,
    }


def table_entry(table: ScoreTable, report: Report) -> dict:
    variants = {}
    over = baseline_label(table, report.baseline)
    for label, figures_ in report.aggregates[table.group].items():
        runs = len(table.runs[label])
        entry = {
            "variant": table.runs[label][0].variant,
            "runs": runs,
            "seeds_per_game": runs // max(1, len(table.games)),
        }
        entry.update({name: ci.to_dict() for name, ci in figures_.items()})
        poi = report.improvement[table.group].get(label)
        if poi is not None:
            entry["probability_of_improvement"] = {"over": over, **poi.to_dict()}
        variants[label] = entry
    return {
        "score": "human_normalized" if table.normalized else "raw_return",
        "games": list(table.games),
        "variants": variants,
        "left_out": [{"run": r.name, "reason": why} for r, why in table.left_out],
    }
