"""index.html: one static page, escaped text, figures and clips by relative path."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from analysis.runs import FINAL_RULE, Run

AGGREGATES = "Aggregates"
"""The plots section shown under the aggregate tables."""

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
        *[plot_section(name, plots) for name, plots in report.plots.items() if name != AGGREGATES],
        videos_section(report.videos),
        runs_section("Finished runs", report.finished),
        partial_section(report.partial),
        skipped_section(report),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def aggregate_section(report: Report) -> list[str]:
    parts = ["<h2>Aggregates</h2>"]
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
        note = (
            "Human-normalised scores, (score − random) / (human − random), with the reference "
            "scores evaluate.py uses."
        )
    else:
        note = (
            "<b>Raw returns</b>: these games have no human reference scores (classic "
            "control), so the aggregates are over raw returns and there is no optimality gap."
        )
    head = "".join(f"<th>{escape(n.replace('_', ' '))} [95% CI]</th>" for n in names)
    head += f"<th>P(&gt; {escape(report.baseline)}) [95% CI]</th>" if poi else ""
    rows = []
    for variant in sorted(values):
        cells = "".join(f"<td>{interval(values[variant][n])}</td>" for n in names)
        if poi:
            cells += f"<td>{interval(poi[variant]) if variant in poi else '—'}</td>"
        runs = len(table.runs[variant])
        rows.append(f"<tr><td>{escape(variant)} ({runs} runs)</td>{cells}</tr>")
    if report.baseline not in table.scores:
        note += (
            f" The baseline {escape(report.baseline)} has no runs here: no probability of "
            "improvement (choose another with --baseline)."
        )
    parts = [
        f"<h3>{escape(', '.join(table.games))}</h3><p class='note'>{note}</p>",
        f"<table><tr><th>variant</th>{head}</tr>{''.join(rows)}</table>",
    ]
    if table.left_out:
        items = "".join(f"<li>{escape(r.name)}: {escape(why)}</li>" for r, why in table.left_out)
        parts.append(f"<p>Finished runs left out of these aggregates:</p><ul>{items}</ul>")
    return parts


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
        rows.append(
            f"<tr><td>{escape(r.name)}</td><td>{escape(r.game)}</td><td>{escape(r.variant)}</td>"
            f"<td>{r.seed}</td><td>{r.step:,} / {r.total_steps:,}</td><td>{len(r.returns)}</td>"
            f"<td>{final}</td></tr>"
        )
    head = (
        "<tr><th>run</th><th>game</th><th>variant</th><th>seed</th><th>checkpoint step / "
        "total</th><th>episodes</th><th>final return</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


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


def skipped_section(report: Report) -> str:
    if not report.skipped:
        return ""
    items = "".join(f"<li>{escape(str(s.path))}: {escape(s.reason)}</li>" for s in report.skipped)
    return f"<h2>Run directories not used</h2><ul>{items}</ul>"
