"""Figures for codebook features ("Codebook Features", Tamkin, Taufeeque & Goodman, 2023).

All functions take plain arrays and return a matplotlib Figure; nothing is shown or saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.style import PALETTE, SEQUENTIAL_CMAP, draw_smoothed, legend_outside, new_figure


def plot_code_usage(counts: np.ndarray, *, ax=None, title: str | None = None) -> Figure:
    """Code usage sorted from most to least used (log scale): shows dead and dominant codes.

    counts: int [n_codes] activations per code.
    """
    counts = np.sort(np.asarray(counts, dtype=float))[::-1]
    fig, ax = new_figure(ax)
    ax.plot(np.arange(1, len(counts) + 1), np.maximum(counts, 0.5), color=PALETTE[0])
    ax.set_yscale("log")
    ax.set_xlabel("code rank")
    ax.set_ylabel("activations (0 shown at 0.5)")
    ax.set_title(title or f"code usage ({int((counts == 0).sum())} dead of {len(counts)})")
    return fig


def plot_code_label_matrix(
    codes: np.ndarray,
    *,
    labels: np.ndarray,
    max_codes: int = 200,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Share of each label among the rows of each code (codes sorted by majority label).

    codes: int [n] (one code per row); labels: int [n]. A pure code is one bright cell in
    its column; the most used ``max_codes`` codes are shown.
    """
    codes, labels = np.asarray(codes).reshape(-1), np.asarray(labels).reshape(-1)
    if len(codes) != len(labels):
        raise ValueError(f"codes ({len(codes)}) and labels ({len(labels)}) differ in length")
    used, ci = np.unique(codes, return_inverse=True)
    lab, li = np.unique(labels, return_inverse=True)
    joint = np.zeros((len(used), len(lab)))
    np.add.at(joint, (ci, li), 1.0)
    top = np.argsort(-joint.sum(1))[:max_codes]
    joint = joint[top]
    share = joint / joint.sum(1, keepdims=True)
    order = np.lexsort((-share.max(1), share.argmax(1)))
    fig, ax = new_figure(ax, figsize=(7.0, 4.5))
    ax.grid(False)
    im = ax.imshow(
        share[order].T, aspect="auto", cmap=SEQUENTIAL_CMAP, vmin=0, vmax=1, interpolation="nearest"
    )
    fig.colorbar(im, ax=ax, label="share of the code's rows")
    ax.set_xlabel(f"code (top {len(top)} by usage, sorted by majority label)")
    ax.set_ylabel("label")
    ax.set_title(title or "codes vs labels")
    return fig


def plot_code_vs_neuron(
    data: Mapping[str, tuple[float, float]], *, ax=None, title: str | None = None
) -> Figure:
    """Grouped bars: F1 of the best code and of the best single neuron for each property.

    data: property -> (best code's F1, best neuron's F1).
    """
    names = list(data)
    code_f1 = [float(data[n][0]) for n in names]
    neuron_f1 = [float(data[n][1]) for n in names]
    x = np.arange(len(names))
    fig, ax = new_figure(ax, figsize=(max(4.0, 1.0 * len(names) + 2), 3.5))
    ax.bar(x - 0.2, code_f1, 0.4, label="best code", color=PALETTE[0])
    ax.bar(x + 0.2, neuron_f1, 0.4, label="best neuron", color=PALETTE[1])
    ax.set_xticks(x, list(names), rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_xlabel("property")
    legend_outside(ax)
    ax.set_title(title or "code search vs best single neuron")
    return fig


def plot_losses(curves: dict[str, Sequence[float]], *, ax=None, title: str | None = None) -> Figure:
    """Training curves, one per name (e.g. task loss and codebook loss): each drawn smoothed
    (centred moving average) with the raw per-step values faint behind it."""
    fig, ax = new_figure(ax)
    for i, (name, values) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        draw_smoothed(ax, np.arange(len(values)), values, color=color, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    legend_outside(ax)
    ax.set_title(title or "training")
    return fig
