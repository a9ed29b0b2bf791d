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

__all__ = ["LayerCurves", "plot_cka_matrix", "plot_layer_curves"]


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
