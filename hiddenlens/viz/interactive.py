"""Interactive (plotly) heat maps: the twin of every matplotlib heat map a reader explores
(CKA between layers, patching grids, bias grids); hover shows the row, column and value.

Per-layer curves, density histograms, the information plane and SAE frontiers have their own
twins next to their static versions (``plot_*_interactive`` in layers, sae and info).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hiddenlens.viz.style import PLOTLY_TEMPLATE, short_names


def plot_heatmap_interactive(
    matrix,
    *,
    rows: Sequence[str],
    cols: Sequence[str] | None = None,
    zlabel: str = "value",
    diverging: bool = False,
    xlabel: str = "column",
    ylabel: str = "row",
    ax=None,
    title: str | None = None,
):
    """A plotly heat map of ``matrix [len(rows), len(cols)]`` with the values in the cells."""
    import plotly.graph_objects as go

    if ax is not None:
        raise ValueError("plot_heatmap_interactive draws a plotly figure; ax must be None")
    z = np.asarray(matrix, dtype=float)
    cols = rows if cols is None else cols
    if z.shape != (len(rows), len(cols)):
        raise ValueError(f"matrix shape {z.shape} does not match {len(rows)} x {len(cols)} labels")
    bound = float(np.nanmax(np.abs(z))) if diverging and np.isfinite(z).any() else None
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=short_names(cols),
            y=short_names(rows),
            colorscale="RdBu_r" if diverging else "Viridis",
            zmin=-bound if bound else None,
            zmax=bound if bound else None,
            colorbar={"title": zlabel},
            texttemplate="%{z:.2f}" if z.size <= 400 else None,
            hovertemplate=f"%{{y}} vs %{{x}}: %{{z:.3f}} {zlabel}<extra></extra>",
        )
    )
    fig.update_layout(
        template=PLOTLY_TEMPLATE,
        title=title or zlabel,
        height=max(320, 40 * len(rows) + 140),
        xaxis_title=xlabel,
        yaxis_title=ylabel,
        yaxis_autorange="reversed",
    )
    return fig
