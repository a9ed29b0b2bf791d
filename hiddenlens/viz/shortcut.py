"""Shortcut-bias figures: bias heatmaps over predictivity x availability, bias by availability
with confidence intervals, bias over training steps, group
accuracies (after Hermann et al., "On the Foundations of Shortcut Learning", ICLR 2024).

Inputs are plain arrays and dicts; this module never imports the shortcut analyzer. The
Feature-Sieve decodability profile by layer is the shared per-layer chart,
:func:`hiddenlens.viz.layers.plot_layer_curves`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.style import (
    DIVERGING_CMAP,
    PALETTE,
    annotate_cells,
    finish_axes,
    legend_outside,
    new_figure,
)


def plot_bias_heatmap(
    bias: np.ndarray,
    *,
    predictivity: Sequence[float],
    availability: Sequence,
    availability_label: str = "shortcut availability",
    vmax: float = 1.0,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Mean shortcut bias per cell. bias: [len(predictivity), len(availability)]."""
    b = np.asarray(bias, dtype=float)
    if b.shape != (len(predictivity), len(availability)):
        raise ValueError(
            f"bias has shape {b.shape}; expected ({len(predictivity)}, {len(availability)})"
        )
    fig, ax = new_figure(ax, figsize=(4.6, 3.6))
    ax.grid(False)
    im = ax.imshow(b, cmap=DIVERGING_CMAP, vmin=-vmax, vmax=vmax, origin="lower", aspect="auto")
    ax.set_xticks(range(len(availability)), [str(a) for a in availability])
    ax.set_yticks(range(len(predictivity)), [f"{p:g}" for p in predictivity])
    ax.set_xlabel(availability_label)
    ax.set_ylabel("shortcut predictivity")
    annotate_cells(ax, im, b)
    fig.colorbar(im, ax=ax, label="shortcut bias")
    if title:
        ax.set_title(title)
    return fig


def plot_bias_lines(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    x: Sequence,
    xlabel: str = "shortcut availability",
    ylabel: str = "shortcut bias",
    ax=None,
    title: str | None = None,
) -> Figure:
    """One line per model: mean with a confidence band. curves: name -> (mean, low, high)."""
    if not curves:
        raise ValueError("plot_bias_lines needs at least one curve")
    fig, ax = new_figure(ax)
    xs = np.arange(len(x))
    for i, (name, (mean, lo, hi)) in enumerate(curves.items()):
        c = PALETTE[i % len(PALETTE)]
        ax.plot(xs, mean, marker="o", color=c, label=name)
        ax.fill_between(xs, lo, hi, color=c, alpha=0.2, linewidth=0)
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(xs, [str(v) for v in x])
    finish_axes(ax, xlabel=xlabel, ylabel=ylabel, title=title, legend=True)
    return fig


def plot_bias_over_training(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    steps: Sequence[int],
    ax=None,
    title: str | None = None,
) -> Figure:
    """Shortcut bias against training step on a log axis (step 0 drawn at 1).

    curves: name -> (mean, low, high), each [len(steps)].
    """
    if not curves:
        raise ValueError("plot_bias_over_training needs at least one curve")
    fig, ax = new_figure(ax)
    xs = np.maximum(np.asarray(steps, dtype=float), 1.0)
    for i, (name, (mean, lo, hi)) in enumerate(curves.items()):
        c = PALETTE[i % len(PALETTE)]
        ax.plot(xs, mean, marker=".", color=c, label=name)
        ax.fill_between(xs, lo, hi, color=c, alpha=0.2, linewidth=0)
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    finish_axes(ax, xlabel="training step (full batch)", ylabel="shortcut bias", title=title, legend=True)
    return fig


def plot_group_accuracy(
    accuracies: Mapping[str, Mapping[str, float]], *, ax=None, title: str | None = None
) -> Figure:
    """Grouped bars: accuracy per group for each method. accuracies: method -> group -> acc."""
    if not accuracies:
        raise ValueError("plot_group_accuracy needs at least one method")
    groups = list(next(iter(accuracies.values())))
    fig, ax = new_figure(ax)
    width = 0.8 / len(accuracies)
    for i, (method, accs) in enumerate(accuracies.items()):
        xs = np.arange(len(groups)) + (i - (len(accuracies) - 1) / 2) * width
        ax.bar(xs, [accs[g] for g in groups], width, color=PALETTE[i % len(PALETTE)], label=method)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("group")
    legend_outside(ax)
    if title:
        ax.set_title(title)
    return fig
