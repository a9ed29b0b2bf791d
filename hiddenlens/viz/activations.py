"""Activation statistics by layer: norms and the fraction of active units.

The percent-nonzero plot follows "The Lazy Neuron Phenomenon" (Li et al., 2023), which
reports MLP activations as naturally sparse (3.0% nonzero in T5-Base, 6.3% in ViT-B16).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.layers import LayerCurves, plot_layer_curves_interactive
from hiddenlens.viz.style import PALETTE, new_figure, short_names


def _by_layer(data: Mapping[str, float], what: str) -> tuple[list[str], np.ndarray]:
    if not isinstance(data, Mapping) or not data:
        raise TypeError(f"{what} takes a non-empty mapping layer name -> value, got {data!r}")
    return [str(k) for k in data], np.asarray(list(data.values()), dtype=float)


def plot_percent_nonzero(data: Mapping[str, float], *, ax=None, title: str | None = None) -> Figure:
    """Bar chart of the percentage of active units (activation > 0). data: layer -> percent."""
    layers, values = _by_layer(data, "plot_percent_nonzero")
    fig, ax = new_figure(ax, figsize=(6.5, 3.6))
    ax.bar(range(len(values)), values, color=PALETTE[0])
    for i, v in enumerate(values):
        ax.annotate(f"{v:.1f}%", (i, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(values)), short_names(layers), rotation=30, ha="right")
    ax.set_ylabel("units with activation > 0 (%)")
    ax.set_xlabel("layer")
    ax.set_title(title or "Activation sparsity by layer")
    return fig


def plot_layer_norms(data: Mapping[str, float], *, ax=None, title: str | None = None):
    """Interactive line of the mean L2 norm of activations per layer. data: layer -> norm."""
    layers, values = _by_layer(data, "plot_layer_norms")
    curves = LayerCurves(layers, {"mean norm": values}, ylabel="mean ‖h‖₂ (activation units)")
    return plot_layer_curves_interactive(
        curves, ax=ax, title=title or "Mean activation norm by layer"
    )
