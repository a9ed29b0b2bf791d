"""Figures for information-bottleneck analysis: the information plane (Shwartz-Ziv & Tishby
2017) with trajectories coloured by epoch, per-layer curves over training epochs (saturation,
max activation, local rank, I(X;T)) and generalisation gap vs bottleneck (Kawaguchi et al. 2023).

Functions take plain arrays/dicts (e.g. ``PlaneHistory.plot_data()``), never an analyzer.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from hiddenlens.viz.style import (
    PALETTE,
    PLOTLY_TEMPLATE,
    SEQUENTIAL_CMAP,
    field_of,
    legend_outside,
    new_figure,
)


def _get(data, key):
    value = field_of(data, key)
    if value is None:
        raise ValueError(f"information-plane data has no {key!r}")
    return value


def plot_information_plane(data, *, ax=None, title=None, log_epochs: bool = True) -> Figure:
    """I(X;T) (x) vs I(T;Y) (y) per layer, points coloured by epoch.

    data: mapping with "epochs" [E], "layers" [L], "ixt" [E, L], "ity" [E, L] (bits) and
    optionally "estimator" (shown in the axis labels).
    """
    epochs = np.asarray(_get(data, "epochs"), dtype=float)
    ixt, ity = np.asarray(_get(data, "ixt")), np.asarray(_get(data, "ity"))
    layers = list(_get(data, "layers"))
    fig, ax = new_figure(ax, figsize=(6.0, 4.5))
    lo = max(epochs.min(), 1.0)
    norm = (
        LogNorm(lo, max(epochs.max(), lo * 1.01))
        if log_epochs
        else Normalize(epochs.min(), epochs.max())
    )
    sc = None
    for j, layer in enumerate(layers):
        ax.plot(ixt[:, j], ity[:, j], color=PALETTE[j % len(PALETTE)], lw=0.8, alpha=0.6, zorder=1)
        sc = ax.scatter(
            ixt[:, j],
            ity[:, j],
            c=np.maximum(epochs, lo),
            cmap=SEQUENTIAL_CMAP,
            norm=norm,
            s=14,
            zorder=2,
            edgecolors="none",
        )
        ax.annotate(
            str(layer),
            (ixt[-1, j], ity[-1, j]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
            color=PALETTE[j % len(PALETTE)],
        )
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="epoch")
    est = field_of(data, "estimator", "") or ""
    suffix = f" [{est}]" if est else ""
    ax.set_xlabel(f"I(X;T) (bits){suffix}")
    ax.set_ylabel(f"I(T;Y) (bits){suffix}")
    ax.set_title(title or "Information plane")
    return fig


def plot_epoch_curves(
    data, *, ax=None, title=None, ylabel: str = "value", logx: bool = True
) -> Figure:
    """One line per layer over training epochs. data: "epochs" [E], "layers" [L], "values"
    [E, L]. (Values across layers at one time are :func:`hiddenlens.viz.layers.plot_layer_curves`.)
    """
    epochs = np.asarray(_get(data, "epochs"), dtype=float)
    vals = np.asarray(_get(data, "values"))
    fig, ax = new_figure(ax)
    for j, layer in enumerate(_get(data, "layers")):
        ax.plot(
            np.maximum(epochs, 1),
            vals[:, j],
            color=PALETTE[j % len(PALETTE)],
            label=str(layer),
            lw=1.2,
        )
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    legend_outside(ax)
    ax.set_title(title or ylabel)
    return fig


def plot_gap_vs_mi(data, *, ax=None, title=None, xlabel: str = "I(X;T|Y) (bits)") -> Figure:
    """Generalisation gap vs an MI quantity. data: "mi" [n], "gap" [n], optional "group" [n]."""
    mi, gap = np.asarray(_get(data, "mi"), dtype=float), np.asarray(_get(data, "gap"), dtype=float)
    groups = field_of(data, "group")
    groups = np.asarray(["all"] * len(mi) if groups is None else groups)
    fig, ax = new_figure(ax)
    for i, g in enumerate(dict.fromkeys(groups.tolist())):
        m = groups == g
        ax.scatter(mi[m], gap[m], s=18, color=PALETTE[i % len(PALETTE)], label=str(g))
    if len(set(groups.tolist())) > 1:
        legend_outside(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("generalisation gap")
    ax.set_title(title or "Generalisation gap vs bottleneck")
    return fig


def plot_information_plane_interactive(data, *, ax=None, title=None):
    """The plotly twin of :func:`plot_information_plane`: hover shows layer, epoch and bits."""
    import plotly.graph_objects as go

    if ax is not None:
        raise ValueError(
            "plot_information_plane_interactive draws a plotly figure; ax must be None"
        )
    epochs = np.asarray(_get(data, "epochs"), dtype=float)
    ixt, ity = np.asarray(_get(data, "ixt")), np.asarray(_get(data, "ity"))
    est = field_of(data, "estimator", "") or ""
    fig = go.Figure()
    for j, layer in enumerate(_get(data, "layers")):
        fig.add_trace(
            go.Scatter(
                x=ixt[:, j],
                y=ity[:, j],
                mode="lines+markers",
                name=str(layer),
                line={"color": PALETTE[j % len(PALETTE)], "width": 1},
                marker={
                    "color": epochs,
                    "colorscale": "Viridis",
                    "size": 6,
                    "colorbar": {"title": "epoch"} if j == 0 else None,
                    "showscale": j == 0,
                },
                customdata=epochs,
                hovertemplate=f"{layer}<br>epoch %{{customdata:.0f}}<br>I(X;T) %{{x:.3f}} bits"
                "<br>I(T;Y) %{y:.3f} bits<extra></extra>",
            )
        )
    suffix = f" [{est}]" if est else ""
    fig.update_layout(
        template=PLOTLY_TEMPLATE,
        title=title or "Information plane",
        height=460,
        xaxis_title=f"I(X;T) (bits){suffix}",
        yaxis_title=f"I(T;Y) (bits){suffix}",
        legend={"x": 1.12},
    )
    return fig
