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


def short_names(names) -> list[str]:
    """'encoder.layer.3' -> 'layer.3': the shortest dotted tails that keep names distinct
    ('transformer.h.0.mlp.act' and 'transformer.h.1.mlp.act' -> 'h.0.mlp.act', ...)."""
    names = [str(n) for n in names]
    longest = max((n.count(".") + 1 for n in names), default=1)
    for k in range(min(2, longest), longest + 1):
        short = [".".join(n.split(".")[-k:]) for n in names]
        if len(set(short)) == len(set(names)):
            return short
    return names


def legend_outside(ax: Axes, **kwargs) -> None:
    """A legend to the right of the axes, off the data (constrained layout makes room)."""
    handles, labels = ax.get_legend_handles_labels()
    if any(lab and not lab.startswith("_") for lab in labels):
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            frameon=False,
            fontsize=8,
            borderaxespad=0.0,
            **kwargs,
        )


def finish_axes(
    ax: Axes, *, xlabel: str | None = None, ylabel: str | None = None,
    title: str | None = None, legend: bool = False,
) -> None:
    """Label the axes, put the legend outside the data (if asked) and set the title."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if legend:
        legend_outside(ax)
    if title:
        ax.set_title(title)


def field_of(data, key: str, default=None):
    """``data[key]`` for mappings, ``data.key`` for result objects (``default`` if absent)."""
    from collections.abc import Mapping

    if isinstance(data, Mapping):
        return data.get(key, default)
    return getattr(data, key, default)


def contrast_text(rgba) -> str:
    """'black' or 'white', whichever reads better on a cell of colour ``rgba`` (WCAG luminance)."""

    def lin(c):
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(float(c)) for c in rgba[:3])
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "black" if luminance > 0.179 else "white"


def annotate_cells(ax: Axes, image, values, fmt: str = "{:.2f}", fontsize: int = 8) -> None:
    """Write each finite value in its heat-map cell, in a colour readable on that cell."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if np.isfinite(v):
                color = contrast_text(image.cmap(image.norm(v)))
                ax.text(
                    j, i, fmt.format(v), ha="center", va="center", fontsize=fontsize, color=color
                )


def smooth(values, window: int | None = None):
    """Centred moving average (window ~ 1/25 of the curve, odd, >= 1); edges use what exists."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    w = window or max(1, len(v) // 25) | 1
    if w <= 1 or len(v) < 3:
        return v
    kernel = np.ones(w)
    finite = np.isfinite(v)
    num = np.convolve(np.where(finite, v, 0.0), kernel, mode="same")
    den = np.convolve(finite.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def draw_smoothed(ax: Axes, x, y, *, color, label: str, window: int | None = None) -> None:
    """A curve drawn smoothed, with the raw values faint behind it."""
    ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
    ax.plot(x, smooth(y, window), color=color, linewidth=1.6, label=label)
