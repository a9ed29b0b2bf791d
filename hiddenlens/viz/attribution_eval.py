"""Figures for evaluating attributions: AggAtt bins, scores per layer and method, recall vs noise.

- ``plot_aggatt``: one row per method of its AggAtt bin maps (Rao et al. 2022), the evaluated
  grid cell outlined;
- ``plot_layer_method_scores``: grouped bars of a localisation score (DiFull / GridPG) per
  method at each layer (ML-Att);
- ``plot_recall_vs_noise``: ChaosMining's top-k recall per method against the noise level.

Every function takes plain arrays and returns a matplotlib ``Figure`` built without pyplot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from hiddenlens.viz.style import PALETTE, SEQUENTIAL_CMAP, finish_axes, new_figure

__all__ = ["plot_aggatt", "plot_layer_method_scores", "plot_recall_vs_noise"]


def plot_aggatt(
    maps: Mapping[str, np.ndarray],
    *,
    bin_labels: Sequence[str],
    box: tuple[int, int, int, int] | None = None,
    scores: Mapping[str, Sequence[float]] | None = None,
    percentile: float = 99.5,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Rows: methods; columns: AggAtt bins (best first). maps: {method: [n_bins, H, W]}.

    box: (top, left, height, width) of the evaluated cell, drawn on every panel; scores:
    {method: [n_bins]} mean score written over each panel. Each row shares one colour scale,
    clipped at its ``percentile`` (the paper's outlier handling).
    """
    if ax is not None:
        raise ValueError("plot_aggatt draws a grid of panels in its own figure; ax must be None")
    names = list(maps)
    if not names:
        raise ValueError("plot_aggatt needs at least one method's bin maps")
    n_bins = len(bin_labels)
    for name in names:
        if np.asarray(maps[name]).shape[0] != n_bins:
            raise ValueError(
                f"{name!r} has {np.asarray(maps[name]).shape[0]} bin maps but {n_bins} bin labels"
            )
    fig = Figure(figsize=(1.45 * n_bins + 1.0, 1.55 * len(names) + 0.5), layout="constrained")
    axes = fig.subplots(len(names), n_bins, squeeze=False)
    for i, name in enumerate(names):
        m = np.asarray(maps[name], dtype=float)
        vmax = float(np.nanpercentile(m, percentile)) or float(np.nanmax(m)) or 1.0
        for j in range(n_bins):
            a = axes[i, j]
            a.imshow(m[j], cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=vmax)
            if box is not None:
                top, left, h, w = box
                a.add_patch(
                    Rectangle((left - 0.5, top - 0.5), w, h, edgecolor="white", facecolor="none")
                )
            label = bin_labels[j] if i == 0 else ""
            if scores is not None:
                label = f"{label}\n{float(scores[name][j]):.2f}".strip()
            a.set_title(label, fontsize=7)
            a.set_xticks([])
            a.set_yticks([])
            if j == 0:
                a.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_layer_method_scores(
    scores: Mapping[str, Mapping[str, float]],
    *,
    ylabel: str = "score",
    chance: float | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Grouped bars: scores {layer: {method: value}}; one group per layer, one bar per method."""
    fig, ax = new_figure(ax, figsize=(6.5, 3.4))
    layers = list(scores)
    methods = list(dict.fromkeys(m for by in scores.values() for m in by))
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        xs = np.arange(len(layers)) + (i - (len(methods) - 1) / 2) * width
        vals = [scores[la].get(m, np.nan) for la in layers]
        ax.bar(xs, vals, width=width, label=m, color=PALETTE[i % len(PALETTE)])
    if chance is not None:
        ax.axhline(chance, color="#555555", linestyle=":", linewidth=1, label="uniform")
    ax.set_xticks(range(len(layers)), layers, fontsize=8)
    finish_axes(ax, xlabel="layer", ylabel=ylabel, title=title, legend=True)
    return fig


def plot_recall_vs_noise(
    recall: Mapping[str, Sequence[float]],
    *,
    levels: Sequence[float],
    chance: Sequence[float] | None = None,
    xlabel: str = "irrelevant features",
    ylabel: str = "top-k recall",
    log_x: bool = True,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Line per method of its recall against the noise level; chance level dotted."""
    fig, ax = new_figure(ax)
    for i, (name, vals) in enumerate(recall.items()):
        if len(vals) != len(levels):
            raise ValueError(f"{name!r} has {len(vals)} values for {len(levels)} levels")
        ax.plot(levels, vals, marker="o", label=name, color=PALETTE[i % len(PALETTE)])
    if chance is not None:
        ax.plot(levels, chance, linestyle=":", color="#555555", label="chance")
    if log_x and min(levels) > 0:
        ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    finish_axes(ax, xlabel=xlabel, ylabel=ylabel, title=title, legend=True)
    return fig
