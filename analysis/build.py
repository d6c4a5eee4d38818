"""The whole report: read the runs, compute the statistics, draw the figures, write summary.json
and index.html. Partial runs are listed apart and kept out of every curve and aggregate. Runs are
grouped by label (variant and setting, analysis.settings): a curve, aggregate or clip is of one
label, never of runs of one variant under different settings."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from analysis import curves, figures, html, stats
from analysis import reference as dopamine
from analysis.runs import FINAL_RULE, PROBE_KEYS, Conflict, Run, Skipped, conflicts, load_runs
from analysis.summary import summarize
from configs.errors import UserError

CLIP_FRAMES = 1000
"""Frames of a report clip at most: a minute of Atari play at 15 agent steps a second."""


@dataclass(frozen=True)
class Plot:
    """A figure of the report and what it shows."""

    file: str
    title: str
    caption: str


@dataclass(frozen=True, eq=False)
class Report:
    """Everything index.html and summary.json say."""

    root: Path
    baseline: str
    bootstrap: stats.Bootstrap
    finished: list[Run]
    partial: list[Run]
    skipped: list[Skipped]
    conflicts: list[Conflict]
    """Games and variants run under several settings (each setting a group of its own)."""
    tables: list[stats.ScoreTable]
    aggregates: dict[str, dict[str, dict[str, stats.Interval]]]
    improvement: dict[str, dict[str, stats.Interval]]
    plots: dict[str, list[Plot]] = field(default_factory=dict)
    """Section name -> its figures."""
    videos: dict[str, dict] = field(default_factory=dict)
    """Label -> its clip: file, run, checkpoint, frames, score (None if cut short); or the run
    and the error that kept it from being recorded."""
    reference: tuple[str, ...] = ()
    """Dopamine agents (short names) drawn behind the Atari curves; empty: no reference."""
    comparisons: dict[Path, dict[str, list[dopamine.Comparison]]] = field(default_factory=dict)
    """Run path -> agent -> the run's returns beside the reference, per iteration with episodes
    (Atari runs of games with a reference)."""

    @property
    def without_reference(self) -> dict[str, str]:
        """Game -> why it has no reference, for the games of the runs (empty without one)."""
        if not self.reference:
            return {}
        runs = self.finished + self.partial
        why = {r.game: dopamine.unavailable(r.game, r.is_atari) for r in runs}
        return {game: reason for game, reason in sorted(why.items()) if reason}


def build_report(
    root: Path,
    out: Path,
    *,
    baseline: str = "dqn",
    videos: bool = False,
    bootstrap: stats.Bootstrap | None = None,
    reference: tuple[str, ...] = (),
) -> Report:
    """Write out/index.html, out/summary.json and the figures; return what they say.

    Args:
        reference: Dopamine agents (short names, analysis.reference.AGENTS) to draw behind the
            Atari curves and to compare each Atari run with in summary.json.
    """
    bootstrap = bootstrap or stats.Bootstrap()
    runs, skipped = load_runs(root)
    make_dir(out)
    tables = stats.score_tables(runs)
    report = Report(
        root=root,
        baseline=baseline,
        bootstrap=bootstrap,
        finished=[r for r in runs if not r.partial],
        partial=[r for r in runs if r.partial],
        skipped=skipped,
        conflicts=conflicts(runs),
        tables=tables,
        aggregates={t.group: stats.aggregates(t, bootstrap) for t in tables},
        improvement={t.group: stats.improvement(t, baseline, bootstrap) for t in tables},
        reference=reference,
    )
    report = replace(report, comparisons=compare_runs(report))
    report = replace(report, plots=draw_all(report, out))
    if videos:
        report = replace(report, videos=record_clips(report.finished, out))
    (out / "summary.json").write_text(json.dumps(summarize(report), indent=2))
    (out / "index.html").write_text(html.render(report))
    return report


def make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"Cannot create the report folder {out}: {error.strerror}.") from None


def draw_all(report: Report, out: Path) -> dict[str, list[Plot]]:
    """Every figure, by the page section it belongs to."""
    palette = figures.colors(sorted({r.label for r in report.finished}))
    return {
        html.AGGREGATES: aggregate_plots(report, out, palette),
        html.LEARNING: learning_plots(report, out, palette),
        "Plasticity probes": probe_plots(report, out, palette),
        "Probes against outcome": scatter_plots(report, out, palette),
    }


def band(label: str, found: curves.Curves, bootstrap: stats.Bootstrap) -> figures.Band:
    mean, ci = stats.mean_band(found.values, bootstrap)
    return figures.Band(label, found.steps, mean, ci[0], ci[1], len(found.runs))


def aggregate_plots(report: Report, out: Path, palette: dict) -> list[Plot]:
    plots = []
    for table in report.tables:
        score = score_name(table)
        where = table_title(table)
        file = f"aggregates_{safe(table.group)}.png"
        title = f"{score}: {where}"
        figures.intervals(report.aggregates[table.group], out / file, title=title, palette=palette)
        over = "over runs of" if not table.normalized else "across"
        caption = (
            f"IQM, median, mean{' and optimality gap' * table.normalized} of final {score} "
            f"per variant and setting, {over} {', '.join(table.games)}, with stratified "
            "bootstrap 95% CIs (rliable). Bar: the interval; black tick: the point estimate."
        )
        plots.append(Plot(file, f"Aggregates ({score}, {where})", caption))
        if report.improvement[table.group]:
            over = stats.baseline_label(table, report.baseline)
            file = f"improvement_{safe(table.group)}.png"
            figures.improvement(
                report.improvement[table.group], out / file, baseline=over, palette=palette
            )
            caption = (
                f"Probability that a run of the variant beats a run of {over} on the same game "
                "(rliable), averaged over games, with 95% CI; 0.5 = no difference."
            )
            plots.append(Plot(file, f"Probability of improvement over {over} ({where})", caption))
    return plots


def table_title(table: stats.ScoreTable) -> str:
    """`across 3 human-normalised Atari games`, or `CartPole-v1 alone`."""
    if table.normalized:
        return f"across {len(table.games)} human-normalised Atari game(s)"
    return f"{table.games[0]} alone"


def learning_plots(report: Report, out: Path, palette: dict) -> list[Plot]:
    plots = []
    for game in sorted({r.game for r in report.finished}):
        bands = []
        for label in sorted({r.label for r in report.finished if r.game == game}):
            mine = [r for r in report.finished if r.game == game and r.label == label]
            found = curves.return_curves(mine)
            if found is not None:
                bands.append(band(label, found, report.bootstrap))
        if bands:
            file = f"curves_{safe(game)}.png"
            runs = [r for r in report.finished if r.game == game]
            end = max(float(b.steps[-1]) for b in bands)
            references, note = reference_steps(report, runs, end)
            figures.learning_curves(
                bands, out / file, title=game, palette=palette, references=references
            )
            caption = (
                f"{game}: charts/episodic_return (raw score), mean over seeds with a 95% "
                "bootstrap band; each run's returns averaged over a trailing window of 5% "
                f"of its episodes and interpolated on a common grid of environment steps.{note}"
            )
            plots.append(Plot(file, f"Learning curves: {game}", caption))
    return plots


def reference_steps(report: Report, runs: list[Run], end: float) -> tuple[list[figures.Steps], str]:
    """The reference curves to draw behind one game's runs up to step `end`, and the caption's
    sentence about them."""
    if not report.reference:
        return [], ""
    game = runs[0].game
    why = dopamine.unavailable(game, runs[0].is_atari)
    skips = sorted({r.frame_skip for r in runs})
    if why is None and len(skips) > 1:
        why = f"its runs differ in frame skip ({', '.join(map(str, skips))})"
    if why is not None:
        return [], f" No published reference: {game} is {why}."
    steps = []
    for agent in report.reference:
        curve = dopamine.load(game, agent)
        edges = dopamine.edges_until(curve, end, frame_skip=skips[0])
        n = len(edges) - 1
        label = f"Dopamine {curve.source_agent} ({curve.values.shape[0]} runs)"
        mean, low, high = curve.mean()[:n], curve.low()[:n], curve.high()[:n]
        steps.append(figures.Steps(label, edges, mean, low, high))
    note = (
        " Behind them, Dopamine's published training returns (google/dopamine, Apache-2.0): "
        "per iteration of 1M frames (250,000 agent steps at frame skip 4), the mean of its "
        "runs (step line) and their min-max band."
    )
    return steps, note


def compare_runs(report: Report) -> dict[Path, dict[str, list[dopamine.Comparison]]]:
    """Every Atari run of a game with a reference: its returns beside each agent's, per
    iteration (finished and partial runs alike)."""
    found = {}
    for run in report.finished + report.partial:
        if not report.reference or dopamine.unavailable(run.game, run.is_atari):
            continue
        steps, values, skip = run.returns.steps, run.returns.values, run.frame_skip
        found[run.path] = {
            agent: dopamine.compare(dopamine.load(run.game, agent), steps, values, frame_skip=skip)
            for agent in report.reference
        }
    return found


def probe_plots(report: Report, out: Path, palette: dict) -> list[Plot]:
    panels, first_value = {}, []
    for key in PROBE_KEYS:
        bands = []
        for label in sorted({r.label for r in report.finished}):
            mine = [r for r in report.finished if r.label == label]
            found, from_zero = curves.probe_curves(mine, key)
            if found is not None:
                bands.append(band(label, found, report.bootstrap))
                if not from_zero and key not in first_value:
                    first_value.append(key)
        if bands:
            panels[key] = bands
    if not panels:
        return []
    figures.probe_curves(panels, out / "probes.png", palette=palette)
    caption = (
        "plasticity/<probe> as its change from the initial network's value on the same probe "
        "batch (plasticity_baseline/<probe>: the step-0 value until the batch is first "
        "redrawn), mean over seeds and games with a 95% bootstrap band."
    )
    if first_value:
        caption += (
            f" No baseline in some runs for {', '.join(first_value)} (the agent logs it "
            "once updates start, or the run predates baselines): there the change is from the "
            "run's first value."
        )
    return [Plot("probes.png", "Probe curves", caption)]


def scatter_plots(report: Report, out: Path, palette: dict) -> list[Plot]:
    plots = []
    keys = [k for k in PROBE_KEYS if k != "probe_fit_loss"]
    for table in report.tables:
        runs = [r for rs in table.runs.values() for r in rs]
        panels = probe_points(runs, keys, lambda r: r.final_score)
        if panels:
            file = f"probes_vs_return_{safe(table.group)}.png"
            y_label = f"final {score_name(table)}"
            figures.scatter(panels, out / file, y_label=y_label, palette=palette)
            caption = (
                "One point per run: how far each probe moved over the run (last value − the "
                "initial network's value on the same probe batch, or the first value where the "
                f"run has neither) against its {y_label} "
                f"({FINAL_RULE})."
            )
            plots.append(Plot(file, f"Probe change against {y_label}", caption))
    fit = [r for r in report.finished if "probe_fit_loss" in r.probes]
    panels = probe_points(fit, keys, lambda r: float(r.probes["probe_fit_loss"].values[-1]))
    if panels:
        figures.scatter(
            panels, out / "probes_vs_fit_loss.png", y_label="final probe_fit_loss", palette=palette
        )
        caption = (
            "One point per run: each probe's change over the run against its last "
            "probe_fit_loss (fit to fresh random targets, relative to a fresh network; "
            "higher = less plastic), as in Lyle et al. (2024)."
        )
        plots.append(Plot("probes_vs_fit_loss.png", "Probe change against plasticity", caption))
    return plots


def probe_points(runs: list[Run], keys: list[str], y) -> dict[str, list[figures.Point]]:
    panels = {}
    for key in keys:
        points = []
        for run in runs:
            moved = curves.probe_change(run, key)
            if moved is not None and y(run) is not None:
                points.append(figures.Point(run.label, moved.delta, float(y(run))))
        if points:
            panels[key] = points
    return panels


def clip_run(runs: list[Run]) -> Run:
    """The run a label's clip plays: on the first game, the best final return (a run without
    episodes last; a return of 0.0 is a score like any other)."""
    game = min(r.game for r in runs)
    mine = [r for r in runs if r.game == game]
    return max(mine, key=lambda r: -math.inf if r.final_return is None else r.final_return)


def record_clips(runs: list[Run], out: Path) -> dict[str, dict]:
    """One short clip per label: its best-scoring finished run on the first game (clip_run),
    played by the run's best.pt where evaluation phases kept one, else by its newest checkpoint."""
    from agents.evaluation import best_path  # the agent, torch and imageio only when asked for
    from analysis.video import record_run

    (out / "videos").mkdir(exist_ok=True)
    clips = {}
    for index, label in enumerate(sorted({r.label for r in runs})):
        mine = [r for r in runs if r.label == label and r.step > 0]
        if not mine:
            continue
        run = clip_run(mine)
        best = best_path(run.path)
        source = best if best.is_file() else run.path
        file = f"videos/{index}_{safe(run.variant)}.mp4"
        try:
            clip = record_run(source, out / file, max_frames=CLIP_FRAMES)
        except UserError as error:  # one unplayable checkpoint costs its clip, not the report
            clips[label] = {"run": run.name, "error": str(error)}
            continue
        clips[label] = {
            "file": file,
            "run": run.name,
            "checkpoint": clip.checkpoint.name,
            "frames": clip.frames,
            "score": clip.score,
        }
    return clips


def score_name(table: stats.ScoreTable) -> str:
    return "human-normalised score" if table.normalized else "raw return"


def safe(name: str) -> str:
    """A file-name form of a game or variant (`ln+wd` -> `ln+wd`, `ALE/x` -> `ALE_x`)."""
    return "".join(c if c.isalnum() or c in "+-_." else "_" for c in name)
