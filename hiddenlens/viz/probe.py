"""Probe figures: layer curves with confidence bands (drawn by :mod:`hiddenlens.viz.layers`)
and the linear-CKA matrix between layers (Kornblith et al. 2019).

Inputs are arrays or any object with ``hook_points``, ``score``, ``ci_low``, ``ci_high``
(a ``hiddenlens.probe.SweepResult`` fits; this module never imports the probe package).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.layers import LayerCurves, plot_layer_curves
from hiddenlens.viz.style import SEQUENTIAL_CMAP, annotate_cells, new_figure, short_names

__all__ = ["LayerCurves", "plot_cka_matrix", "plot_layer_curves", "plot_tree_distances"]


def plot_cka_matrix(
    matrix,
    *,
    rows: Sequence[str],
    cols: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Heatmap of a CKA matrix ``[len(rows), len(cols)]`` with the values in the cells."""
    M = np.asarray(matrix, float)
    cols = rows if cols is None else cols
    if M.shape != (len(rows), len(cols)):
        raise ValueError(f"matrix shape {M.shape} does not match {len(rows)} x {len(cols)} labels")
    fig, ax = new_figure(ax, figsize=(1.6 + 0.75 * len(cols), 1.2 + 0.65 * len(rows)))
    ax.grid(False)
    im = ax.imshow(M, cmap=SEQUENTIAL_CMAP, vmin=min(0.0, np.nanmin(M)), vmax=1.0)
    annotate_cells(ax, im, M)
    ax.set_xticks(np.arange(len(cols)), short_names(cols), rotation=30, ha="right")
    ax.set_yticks(np.arange(len(rows)), short_names(rows))
    ax.set_xlabel("layer")
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, shrink=0.8, label="linear CKA")
    ax.set_title(title or "Linear CKA between layers")
    return fig


def plot_tree_distances(
    data, *, words: Sequence[str] | None = None, ax=None, title: str | None = None
) -> Figure:
    """A structural probe's view of one sentence (Hewitt & Manning 2019).

    data: ``(pred, parents)``: predicted squared distances [n, n] and the gold tree as a
    parent array (-1 at the root). The heat map shows ``pred``; gold tree edges are marked
    with a dot in both cells (i, parent) and (parent, i), so a probe that reads the tree has
    its smallest off-diagonal values under the dots.
    """
    pred, parents = data
    D = np.asarray(pred, float)
    par = np.asarray(parents, int)
    if D.ndim != 2 or D.shape != (len(par), len(par)):
        raise ValueError(
            f"pred must be [n, n] with n = {len(par)} (one parent per word), got {D.shape}"
        )
    n = len(par)
    words = [str(i) for i in range(n)] if words is None else list(words)
    if len(words) != n:
        raise ValueError(f"{len(words)} words for a sentence of {n}")
    fig, ax = new_figure(ax, figsize=(1.8 + 0.35 * n, 1.4 + 0.35 * n))
    ax.grid(False)
    im = ax.imshow(D, cmap=SEQUENTIAL_CMAP)
    child = np.flatnonzero(par >= 0)
    ax.scatter(par[child], child, s=18, c="white", edgecolors="black", linewidths=0.5, zorder=3)
    ax.scatter(
        child,
        par[child],
        s=18,
        c="white",
        edgecolors="black",
        linewidths=0.5,
        zorder=3,
        label="gold tree edge",
    )
    ax.set_xticks(np.arange(n), words, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(np.arange(n), words, fontsize=7)
    ax.set_xlabel("token")
    ax.set_ylabel("token")
    fig.colorbar(im, ax=ax, shrink=0.8, label="predicted squared distance")
    ax.set_title(title or "Structural probe distances (dots: gold edges)")
    return fig
