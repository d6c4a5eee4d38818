"""The report's figures as PNG files, drawn with matplotlib's object API on the Agg canvas (no
display, no pyplot state): every function takes plain data and a path, and returns the path."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.stats import Interval

DPI = 110
TICK_WIDTH = 44
"""Characters per line of a row's label (a variant and its setting) beside a bar."""


@dataclass(frozen=True, eq=False)
class Band:
    """One variant's mean curve and its 95% bootstrap band."""

    variant: str
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: int


@dataclass(frozen=True, eq=False)
class Steps:
    """A published reference as a step function: `mean`, `low`, `high` hold on
    [edges[i], edges[i+1]) (len(edges) = len(mean) + 1)."""

    label: str
    edges: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


REFERENCE_STYLES = (("black", "--"), ("saddlebrown", ":"), ("dimgray", "-."))
"""Colour and line style of each reference drawn behind the variants (cycled)."""


@dataclass(frozen=True)
class Point:
    """One run in a scatter figure."""

    variant: str
    x: float
    y: float


def colors(variants: list[str]) -> dict[str, tuple]:
    """One fixed colour per variant (sorted), the same in every figure."""
    cmap = colormaps["tab10"]
    return {v: cmap(i % 10) for i, v in enumerate(sorted(variants))}


def save(fig: Figure, path: Path) -> Path:
    if fig.get_layout_engine() is None:  # a figure with a legend outside lays itself out
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    return path


def legend_below(fig: Figure, axes) -> None:
    """Every label of `axes` once, in one legend under the panels (a label names a variant and
    its setting: too long to sit inside a panel without covering it)."""
    found = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            found.setdefault(label, handle)
    labels = [textwrap.fill(label, 2 * TICK_WIDTH, break_on_hyphens=False) for label in found]
    fig.legend(list(found.values()), labels, loc="outside lower center", fontsize=8)


def draw_bands(ax, bands: list[Band], palette: dict[str, tuple]) -> None:
    for band in bands:
        color = palette[band.variant]
        label = f"{band.variant} ({band.runs} run{'s' * (band.runs != 1)})"
        ax.plot(band.steps, band.mean, color=color, label=label, linewidth=1.8)
        ax.fill_between(band.steps, band.low, band.high, color=color, alpha=0.2, linewidth=0)
    ax.grid(alpha=0.3)
    ax.set_xlabel("environment steps")


def draw_references(ax, references: list[Steps]) -> None:
    """Each reference's mean as a dashed step line over its min-max band, behind the variants."""
    for i, ref in enumerate(references):
        color, style = REFERENCE_STYLES[i % len(REFERENCE_STYLES)]
        band = {"baseline": ref.low, "fill": True, "alpha": 0.12, "zorder": 0.5}
        ax.stairs(ref.high, ref.edges, color=color, **band)
        line = {"baseline": None, "linestyle": style, "linewidth": 1.4, "zorder": 0.6}
        ax.stairs(ref.mean, ref.edges, color=color, label=ref.label, **line)


def learning_curves(
    bands: list[Band],
    path: Path,
    *,
    title: str,
    palette: dict,
    references: list[Steps] | None = None,
) -> Path:
    """Episode return against environment steps, one line per variant with its band, and
    `references` (published curves) behind them."""
    entries = len(bands) + len(references or [])
    fig = Figure(figsize=(7.2, 4.0 + 0.2 * entries), layout="constrained")
    ax = fig.subplots()
    draw_references(ax, references or [])
    draw_bands(ax, bands, palette)
    ax.set_ylabel("episode return (smoothed)")
    ax.set_title(title)
    legend_below(fig, [ax])
    return save(fig, path)


def probe_curves(panels: dict[str, list[Band]], path: Path, *, palette: dict) -> Path:
    """One panel per probe: its change from the start of training, per variant."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows + 0.25 * len(palette)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (key, bands) in zip(axes, panels.items(), strict=False):
        draw_bands(ax, bands, palette)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"Δ {key}", fontsize=10)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    legend_below(fig, axes[: len(panels)])
    return save(fig, path)


def intervals(
    table: dict[str, dict[str, Interval]], path: Path, *, title: str, palette: dict
) -> Path:
    """rliable's interval-estimate figure: one panel per aggregate, a bar per variant spanning its
    95% CI with a tick at the point estimate."""
    names = list(next(iter(table.values())))
    variants = sorted(table)
    lines = sum(label.count("\n") + 1 for label in row_labels(variants))
    fig = Figure(figsize=(2.8 * len(names) + 3.0, 0.3 * lines + 0.3 * len(variants) + 1.4))
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=True):
        for row, variant in enumerate(variants):
            ci = table[variant][name]
            color = palette[variant]
            ax.barh(row, ci.high - ci.low, left=ci.low, height=0.6, color=color, alpha=0.6)
            tick(ax, ci.value, row)
        shown = row_labels(variants) if ax is axes[0] else [""] * len(variants)
        ax.set_yticks(range(len(variants)), shown, fontsize=9)
        ax.set_title(name.replace("_", " "), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def row_labels(labels: list[str]) -> list[str]:
    """Labels wrapped to TICK_WIDTH characters a line, so that a long setting leaves the panels
    their width."""
    return [textwrap.fill(label, TICK_WIDTH, break_on_hyphens=False) for label in labels]


def tick(ax, value: float, row: int) -> None:
    """The point estimate as a black tick across its bar, inside the axis range even where the
    interval has no width (one run)."""
    ax.plot([value, value], [row - 0.3, row + 0.3], color="black", linewidth=1.5)
    ax.use_sticky_edges = False  # a bar's edge would pin the axis there, on a tick at its end


def improvement(table: dict[str, Interval], path: Path, *, baseline: str, palette: dict) -> Path:
    """P(variant > baseline) with its 95% CI, one row per variant; 0.5 is no difference."""
    variants = sorted(table)
    lines = sum(label.count("\n") + 1 for label in row_labels(variants))
    fig = Figure(figsize=(7.2, 0.3 * lines + 0.3 * len(variants) + 1.6))
    ax = fig.subplots()
    for row, variant in enumerate(variants):
        ci = table[variant]
        ax.barh(row, ci.high - ci.low, left=ci.low, height=0.6, color=palette[variant], alpha=0.6)
        tick(ax, ci.value, row)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yticks(range(len(variants)), row_labels(variants), fontsize=9)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("P(row > baseline)")
    fig.suptitle(f"baseline: {textwrap.fill(baseline, 2 * TICK_WIDTH)}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def scatter(panels: dict[str, list[Point]], path: Path, *, y_label: str, palette: dict) -> Path:
    """One panel per probe: each run's probe change (x) against `y_label` (y)."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.25 * len(palette)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (key, points) in zip(axes, panels.items(), strict=False):
        for variant in sorted({p.variant for p in points}):
            mine = [p for p in points if p.variant == variant]
            ax.scatter(
                [p.x for p in mine],
                [p.y for p in mine],
                color=palette[variant],
                label=variant,
                s=28,
                alpha=0.85,
            )
        ax.set_xlabel(f"Δ {key}", fontsize=9)
        ax.set_ylabel(y_label, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    legend_below(fig, axes[: len(panels)])
    return save(fig, path)
