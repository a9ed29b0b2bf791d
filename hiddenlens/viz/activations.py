"""Activation statistics by layer: norms and the fraction of active units.

The percent-nonzero plot follows "The Lazy Neuron Phenomenon" (Li et al., 2023), which
reports MLP activations as naturally sparse (3.0% nonzero in T5-Base, 6.3% in ViT-B16).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hiddenlens.viz.style import PALETTE, PLOTLY_TEMPLATE, new_figure


def _check(layers: Sequence[str], values: Sequence[float]) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if len(layers) != len(values):
        raise ValueError(f"{len(layers)} layer names but {len(values)} values")
    return values


def plot_percent_nonzero(
    layers: Sequence[str],
    percent: Sequence[float],
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Bar chart of the percentage of active units (activation > 0) per layer."""
    values = _check(layers, percent)
    fig, ax = new_figure(ax, figsize=(6.5, 3.6))
    ax.bar(range(len(values)), values, color=PALETTE[0])
    for i, v in enumerate(values):
        ax.annotate(f"{v:.1f}%", (i, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(values)), list(layers), rotation=30, ha="right")
    ax.set_ylabel("units with activation > 0 (%)")
    ax.set_xlabel("layer")
    ax.set_title(title or "Activation sparsity by layer")
    return fig


def plot_layer_norms(
    layers: Sequence[str], mean_norm: Sequence[float], *, title: str | None = None
) -> go.Figure:
    """Interactive line of the mean L2 norm of activations per layer."""
    values = _check(layers, mean_norm)
    fig = go.Figure(
        go.Scatter(x=list(layers), y=values, mode="lines+markers", line={"color": PALETTE[0]})
    )
    fig.update_layout(
        template=PLOTLY_TEMPLATE,
        title=title or "Mean activation norm by layer",
        xaxis_title="layer",
        yaxis_title="mean ‖h‖₂ (activation units)",
        height=360,
    )
    return fig
