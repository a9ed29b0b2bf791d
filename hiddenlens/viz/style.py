"""One look for every hiddenlens figure: a colour-blind-safe palette and axis styling.

The qualitative palette is Paul Tol's "bright" scheme (distinguishable under the common
colour-vision deficiencies); sequential and diverging maps are viridis and RdBu.
"""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure

PALETTE = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB"]
SEQUENTIAL_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"
PLOTLY_TEMPLATE = "simple_white"


def apply_style(ax: Axes) -> Axes:
    """Light grid, no top/right spines, readable tick labels."""
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=9)
    ax.set_prop_cycle(color=PALETTE)
    return ax


def new_figure(ax: Axes | None = None, figsize: tuple[float, float] | None = None):
    """``(figure, axes)``: reuse ``ax.figure`` when given, else a new pyplot-free Figure."""
    if ax is not None:
        return ax.figure, apply_style(ax)
    fig = Figure(figsize=figsize or (6.0, 4.0), layout="constrained")
    return fig, apply_style(fig.add_subplot(1, 1, 1))


def new_grid(
    nrows: int, ncols: int, figsize: tuple[float, float] | None = None
) -> tuple[Figure, list]:
    """A Figure with an ``nrows × ncols`` grid of styled axes (flattened list)."""
    fig = Figure(figsize=figsize or (4.0 * ncols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    return fig, [apply_style(a) for a in axes]
