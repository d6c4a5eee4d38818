"""index.html: one static page, escaped text, figures and clips by relative path."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from analysis import reference as dopamine
from analysis.runs import FINAL_RULE, Run
from analysis.stats import baseline_label

AGGREGATES = "Aggregates"
"""The plots section shown under the aggregate tables."""
LEARNING = "Learning curves"
"""The plots section the published baselines' section follows."""

if TYPE_CHECKING:  # build imports this module; the type only for hints
    from analysis.build import Plot, Report
    from analysis.stats import ScoreTable

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0 2em; } figcaption { font-size: 0.9em; color: #444; max-width: 900px; }
img { max-width: 100%; } .note { background: #fff6d5; padding: 0.5em 1em; }
"""


def render(report: Report) -> str:
    """The whole page."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>plasticity-suite report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>plasticity-suite report</h1>",
        f"<p>{len(report.finished)} finished run(s), {len(report.partial)} partial, under "
        f"<code>{escape(str(report.root))}</code>. Final return: {escape(FINAL_RULE)}. "
        f"Confidence intervals: stratified bootstrap ({report.bootstrap.reps} reps, rliable).</p>",
        *aggregate_section(report),
        *[
            section(name, plots, report)
            for name, plots in report.plots.items()
            if name != AGGREGATES
        ],
        videos_section(report.videos),
        conflicts_section(report),
        runs_section("Finished runs", report.finished),
        partial_section(report.partial),
        skipped_section(report),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


HOW = (
    "How scores are aggregated: across games, only human-normalised Atari scores, "
    "(score − random) / (human − random). Every other game (MinAtar, classic control, Atari "
    "games without human reference scores) has aggregates of its own raw returns, per game: "
    "raw scores are never pooled across games, since each game has a scale of its own and an "
    "aggregate over them would mostly measure the highest-scoring game. A row is one variant "
    "under one setting: runs whose configs differ in anything but the seed, where and how fast "
    "they ran (device, threads, pinned memory, memory layout, torch.compile), how often they "
    "wrote checkpoints and logs, and the probes' and evaluation phases' keys (they only "
    "observe) are separate rows, however they came to differ "
    "(another budget, preset or --set); a row is named by the preset nearest its config and "
    "the keys that differ from it."
)


def aggregate_section(report: Report) -> list[str]:
    parts = ["<h2>Aggregates</h2>", f"<p>{escape(HOW)}</p>"]
    if not report.tables:
        parts.append("<p class='note'>No finished run with episodes: no aggregates.</p>")
    for table in report.tables:
        parts += aggregate_table(table, report)
    parts += [figure(p) for p in report.plots.get(AGGREGATES, [])]
    return parts


def aggregate_table(table: ScoreTable, report: Report) -> list[str]:
    values = report.aggregates[table.group]
    names = list(next(iter(values.values())))
    poi = report.improvement[table.group]
    if table.normalized:
        title = f"Across human-normalised Atari games: {', '.join(table.games)}"
        note = (
            "Human-normalised scores, (score − random) / (human − random), with the reference "
            "scores evaluate.py uses."
        )
    else:
        (game,) = table.games
        title = f"{game} (raw returns, this game alone)"
        note = (
            f"<b>Raw returns of {escape(game)} alone</b>: {raw_kind(table.runs)}, without "
            "human reference scores, so these aggregates are over its runs' raw returns, "
            "never pooled across games, and there is no optimality gap."
        )
    head = "".join(f"<th>{escape(n.replace('_', ' '))} [95% CI]</th>" for n in names)
    head += f"<th>P(&gt; {escape(report.baseline)}) [95% CI]</th>" if poi else ""
    rows = []
    for variant in sorted(values):
        cells = "".join(f"<td>{interval(values[variant][n])}</td>" for n in names)
        if poi:
            cells += f"<td>{interval(poi[variant]) if variant in poi else '—'}</td>"
        runs = len(table.runs[variant])
        rows.append(f"<tr><td>{escape(variant)} ({runs} run{'s' * (runs != 1)})</td>{cells}</tr>")
    note += baseline_note(table, report.baseline)
    parts = [
        f"<h3>{escape(title)}</h3><p class='note'>{note}</p>",
        f"<table><tr><th>variant and setting</th>{head}</tr>{''.join(rows)}</table>",
    ]
    if table.left_out:
        items = "".join(f"<li>{escape(r.name)}: {escape(why)}</li>" for r, why in table.left_out)
        parts.append(f"<p>Finished runs left out of these aggregates:</p><ul>{items}</ul>")
    return parts


def raw_kind(runs: dict[str, tuple[Run, ...]]) -> str:
    """What a game without human reference scores is, from one of its runs."""
    run = next(iter(runs.values()))[0]
    if run.is_atari:
        return "an Atari game that evaluate.py's reference table lacks"
    if run.game.startswith("minatar_"):  # envs.resolve_env_id's name for MinAtar games
        return "a MinAtar game"
    return "a classic-control task"


def baseline_note(table: ScoreTable, baseline: str) -> str:
    """Why a table has no probability of improvement, or which label it compares with."""
    over = baseline_label(table, baseline)
    if over is not None:
        return "" if over == baseline else f" P(&gt; {escape(baseline)}) is over {escape(over)}."
    several = [label for label, runs in table.runs.items() if runs[0].variant == baseline]
    if several:
        return (
            f" The baseline {escape(baseline)} ran here under {len(several)} settings: no "
            "probability of improvement (name one with --baseline 'LABEL')."
        )
    return (
        f" The baseline {escape(baseline)} has no runs here: no probability of "
        "improvement (choose another with --baseline)."
    )


def interval(ci) -> str:
    return f"{ci.value:.3g} [{ci.low:.3g}, {ci.high:.3g}]"


def figure(plot: Plot) -> str:
    return (
        f"<figure><img src='{escape(plot.file)}' alt='{escape(plot.title)}'>"
        f"<figcaption><b>{escape(plot.title)}.</b> {escape(plot.caption)}</figcaption></figure>"
    )


def plot_section(name: str, plots: list[Plot]) -> str:
    if not plots:
        return ""
    return f"<h2>{escape(name)}</h2>{''.join(figure(p) for p in plots)}"


def section(name: str, plots: list[Plot], report: Report) -> str:
    """A plots section; the learning curves followed by the published baselines."""
    return plot_section(name, plots) + (reference_section(report) if name == LEARNING else "")


def reference_section(report: Report) -> str:
    """What is drawn behind the Atari curves, each run's last iteration beside it, and the
    games without a reference; empty when the report was asked for none."""
    if not report.reference:
        return ""
    agents = ", ".join(f"{a} ({dopamine.AGENTS[a]})" for a in report.reference)
    note = (
        f"Behind each Atari learning curve: Dopamine's published training returns of {agents}, "
        f"{dopamine.table().header.get('source', '')}, Apache-2.0 (Copyright 2018 The "
        "Dopamine Authors; see analysis/data/NOTICE). A value is one Dopamine run's average "
        "return over the training episodes of an iteration of 1M frames (250,000 agent steps "
        "at frame skip 4), with sticky actions; the step line is the mean of its runs, the band "
        "their min and max. Below, each run's last iteration with episodes: the mean return "
        "of its episodes that ended in it beside the reference there, and its percentile among "
        f"the reference runs ({dopamine.PERCENTILE_RULE}). summary.json has every "
        "iteration."
    )
    parts = [f"<h2>Published baselines</h2><p class='note'>{escape(note)}</p>"]
    rows = reference_rows(report)
    if rows:
        head = (
            "<tr><th>run</th><th>agent</th><th>iteration (agent steps)</th><th>episodes</th>"
            "<th>return</th><th>reference mean [min, max]</th><th>percentile</th></tr>"
        )
        parts.append(f"<table>{head}{rows}</table>")
    missing = report.without_reference
    if missing:
        items = "".join(f"<li>{escape(g)}: {escape(why)}</li>" for g, why in missing.items())
        parts.append(f"<p>No published reference for:</p><ul>{items}</ul>")
    return "".join(parts)


def reference_rows(report: Report) -> str:
    rows = []
    for run in report.finished + report.partial:
        for agent, found in report.comparisons.get(run.path, {}).items():
            if not found:
                continue
            last = found[-1]
            ref = last.reference
            rows.append(
                f"<tr><td>{escape(run.name)}</td><td>{escape(agent)}</td>"
                f"<td>{ref.iteration} ({last.steps[0]:,}–{last.steps[1]:,})</td>"
                f"<td>{last.episodes}</td><td>{last.mean_return:.4g}</td>"
                f"<td>{ref.mean:.4g} [{ref.low:.4g}, {ref.high:.4g}]</td>"
                f"<td>{ref.percentile:g}</td></tr>"
            )
    return "".join(rows)


def videos_section(videos: dict[str, dict]) -> str:
    if not videos:
        return ""
    clips = []
    for variant, clip in videos.items():
        if "error" in clip:
            clips.append(
                f"<p><b>{escape(variant)}</b>: no clip of {escape(clip['run'])}: "
                f"{escape(clip['error'])}</p>"
            )
            continue
        file = escape(clip["file"])
        score = "cut short" if clip["score"] is None else f"score {clip['score']:g}"
        clips.append(
            f"<figure><video controls src='{file}'></video><figcaption><b>{escape(variant)}</b>: "
            f"{escape(clip['run'])}, {escape(clip['checkpoint'])}, {clip['frames']} frames, "
            f"{score} (<a href='{file}'>{file}</a>)</figcaption></figure>"
        )
    return f"<h2>Clips</h2>{''.join(clips)}"


def run_rows(runs: list[Run]) -> str:
    rows = []
    for r in runs:
        final = "—" if r.final_return is None else f"{r.final_return:.4g}"
        refills = ", ".join(f"{step:,}" for step in r.refilled_at)
        mark = f" <span class='note'>(replay refilled at {refills})</span>" if refills else ""
        rows.append(
            f"<tr><td>{escape(r.name)}{mark}</td><td>{escape(r.game)}</td><td>{escape(r.label)}</td>"
            f"<td>{r.seed}</td><td>{r.step:,} / {r.total_steps:,}</td><td>{len(r.returns)}</td>"
            f"<td>{final}</td></tr>"
        )
    head = (
        "<tr><th>run</th><th>game</th><th>variant and setting</th><th>seed</th><th>checkpoint "
        "step / total</th><th>episodes</th><th>final return</th></tr>"
    )
    note = (
        "<p class='note'>A run marked <i>replay refilled</i> was resumed from a checkpoint without "
        "replay contents (replay.save_contents=false): at those steps its buffer started empty "
        "and refilled at the current ε, and its updates paused for learning_starts steps.</p>"
        if any(r.refilled_at for r in runs)
        else ""
    )
    return f"<table>{head}{''.join(rows)}</table>{note}"


def runs_section(title: str, runs: list[Run]) -> str:
    return f"<h2>{escape(title)}</h2>{run_rows(runs)}" if runs else ""


def partial_section(runs: list[Run]) -> str:
    if not runs:
        return ""
    note = (
        "<p class='note'><b>Partial runs</b>: their newest checkpoint is before the "
        "config's train.total_steps. They are left out of every curve, aggregate and figure "
        "above.</p>"
    )
    return f"<h2>Partial runs (not in the aggregates)</h2>{note}{run_rows(runs)}"


def conflicts_section(report: Report) -> str:
    """The games whose variant ran under several settings: each setting is its own group."""
    if not report.conflicts:
        return ""
    items = []
    for c in report.conflicts:
        settings = "; ".join(
            f"{escape(label)} ({n} run{'s' * (n != 1)})" for label, n in c.settings
        )
        which = f"{escape(c.game)}, {escape(c.variant)}: {len(c.settings)} settings"
        items.append(f"<li>{which}: {settings}</li>")
    note = (
        "<p class='note'>These games ran one variant under several settings (another budget, "
        "preset or --set). Each setting is a group of its own in every table and figure; none "
        "is pooled with another or dropped.</p>"
    )
    return f"<h2>Several settings of one variant</h2>{note}<ul>{''.join(items)}</ul>"


def skipped_section(report: Report) -> str:
    if not report.skipped:
        return ""
    items = "".join(f"<li>{escape(str(s.path))}: {escape(s.reason)}</li>" for s in report.skipped)
    note = (
        "<p class='note'>Directories that hold a config.yaml and are not counted: unreadable "
        "ones, duplicates (another run of the same game, variant, setting and seed counts: a "
        "finished one before a partial one, then the one that went further, then the newest "
        "name) and anything under a hidden folder (a name starting with '.'), such as the "
        "attempts sweep.py sets aside.</p>"
    )
    return f"<h2>Run directories not used</h2>{note}<ul>{items}</ul>"
