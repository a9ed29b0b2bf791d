"""Figures for neural-collapse results (Papyan, Han & Donoho 2020 style curves); NC1 by
layer is the shared per-layer chart, :func:`hiddenlens.viz.layers.plot_layer_curves`.

Every function takes plain arrays / mappings (never an analyzer object) and returns a
matplotlib ``Figure``; nothing is shown or saved here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.layers import LayerCurves, plot_layer_curves
from hiddenlens.viz.style import (
    DIVERGING_CMAP,
    PALETTE,
    SEQUENTIAL_CMAP,
    field_of,
    finish_axes,
    new_figure,
)

__all__ = [
    "LayerCurves",
    "plot_cosine_matrix",
    "plot_layer_curves",
    "plot_mixup_projection",
    "plot_nc_curves",
    "plot_norms_vs_counts",
]


def plot_nc_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    ax=None,
    title: str | None = None,
    ylabel: str = "NC1",
    xlabel: str = "epoch",
    logy: bool = True,
    markers: Mapping[str, float | None] | None = None,
) -> Figure:
    """One line per series: ``{label: (x, y)}``; ``markers`` draws labelled vertical lines
    (e.g. ``{"first zero error": 41, "stays zero": 77}``)."""
    fig, ax = new_figure(ax)
    for i, (label, (x, y)) in enumerate(curves.items()):
        y = np.asarray(y, dtype=float)
        if logy:
            y = np.where(y > 0, y, np.nan)  # log axis: drop exact zeros
        ax.plot(x, y, label=label, color=PALETTE[i % len(PALETTE)], linewidth=1.5)
    for j, (label, at) in enumerate((markers or {}).items()):
        if at is not None:
            ax.axvline(at, color="0.3", linestyle=("--", ":")[j % 2], linewidth=1, label=label)
    if logy:
        ax.set_yscale("log")
    finish_axes(ax, xlabel=xlabel, ylabel=ylabel, title=title, legend=True)
    return fig


def plot_cosine_matrix(
    cos: np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Heatmap of pairwise cosines [C, C] on a fixed [−1, 1] diverging scale."""
    fig, ax = new_figure(ax, figsize=(4.6, 4.0))
    cos = np.asarray(cos, dtype=float)
    im = ax.imshow(cos, cmap=DIVERGING_CMAP, vmin=-1, vmax=1)
    ax.grid(False)
    ticks = np.arange(cos.shape[0])
    names = [str(t) for t in (labels if labels is not None else ticks)]
    ax.set_xticks(ticks, names, fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    fig.colorbar(im, ax=ax, shrink=0.8, label="cosine")
    if title:
        ax.set_title(title)
    return fig


def plot_norms_vs_counts(
    norms: Mapping[str, Sequence[float]],
    *,
    counts: Sequence[float],
    labels: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Per-class norms (e.g. class means, classifier rows; each scaled to mean 1) against
    the number of training rows of the class."""
    fig, ax = new_figure(ax)
    counts = np.asarray(counts, dtype=float)
    for i, (label, vals) in enumerate(norms.items()):
        v = np.asarray(vals, dtype=float)
        ax.scatter(counts, v / v.mean(), label=label, color=PALETTE[i % len(PALETTE)], s=28)
    if labels is not None:
        first = np.asarray(next(iter(norms.values())), dtype=float)
        for c, n, t in zip(counts, first / first.mean(), labels):
            ax.annotate(str(t), (c, n), fontsize=7, xytext=(3, 3), textcoords="offset points")
    finish_axes(ax, xlabel="rows in class", ylabel="norm / mean norm", title=title, legend=True)
    return fig


def plot_mixup_projection(data, *, ax=None, title: str | None = None) -> Figure:
    """Mixed-input features in the plane of three class means (a face of the class-mean
    simplex), coloured by the mixing weight λ (Fisher et al. 2024).

    data: mapping or object with ``points`` [n, 2] and ``lam`` [n] (from
    :func:`hiddenlens.collapse.plane_coordinates`), ``vertices`` [3, 2] (the class means),
    optional ``labels`` (3 class names) and ``clean`` [m, 2] (clean features, drawn grey).
    """
    pts = np.asarray(field_of(data, "points"), dtype=float)
    lam = np.asarray(field_of(data, "lam"), dtype=float)
    verts = np.asarray(field_of(data, "vertices"), dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or lam.shape != (pts.shape[0],):
        raise ValueError(f"points must be [n, 2] with lam [n]; got {pts.shape} and {lam.shape}")
    if verts.shape != (3, 2):
        raise ValueError(f"vertices must be [3, 2], got {verts.shape}")
    fig, ax = new_figure(ax, figsize=(5.0, 4.4))
    clean = field_of(data, "clean")
    if clean is not None:
        c = np.asarray(clean, dtype=float)
        ax.scatter(c[:, 0], c[:, 1], s=6, color="#BBBBBB", label="clean", zorder=1)
    tri = np.vstack([verts, verts[:1]])
    ax.plot(tri[:, 0], tri[:, 1], color="0.3", linewidth=1, linestyle="--", zorder=2)
    sc = ax.scatter(pts[:, 0], pts[:, 1], c=lam, cmap=SEQUENTIAL_CMAP, vmin=0, vmax=1, s=10, zorder=3)
    labels = field_of(data, "labels") or ["a", "b", "c"]
    for (x, y), t in zip(verts, labels):
        ax.annotate(f"μ_{t}", (x, y), fontsize=9, xytext=(4, 4), textcoords="offset points")
    ax.set_aspect("equal", adjustable="datalim")
    fig.colorbar(sc, ax=ax, shrink=0.8, label="λ (weight of the first class)")
    finish_axes(ax, xlabel="plane axis 1", ylabel="plane axis 2", title=title, legend=clean is not None)
    return fig
