"""Figures for information-bottleneck analysis: the information plane (Shwartz-Ziv & Tishby
2017) with trajectories coloured by epoch, per-layer curves over training (saturation, max
activation, local rank, I(X;T)) and generalisation gap vs bottleneck (Kawaguchi et al. 2023).

Functions take plain arrays/dicts (e.g. ``PlaneHistory.plot_data()``), never an analyzer.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from hiddenlens.viz.style import PALETTE, SEQUENTIAL_CMAP, new_figure


def _get(data, key):
    return data[key] if isinstance(data, dict) else getattr(data, key)


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
    est = data.get("estimator", "") if isinstance(data, dict) else ""
    suffix = f" [{est}]" if est else ""
    ax.set_xlabel(f"I(X;T) (bits){suffix}")
    ax.set_ylabel(f"I(T;Y) (bits){suffix}")
    ax.set_title(title or "Information plane")
    return fig


def plot_layer_curves(
    data, *, ax=None, title=None, ylabel: str = "value", logx: bool = True
) -> Figure:
    """One line per layer over epochs. data: "epochs" [E], "layers" [L], "values" [E, L]."""
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
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title or ylabel)
    return fig


def plot_gap_vs_mi(data, *, ax=None, title=None, xlabel: str = "I(X;T|Y) (bits)") -> Figure:
    """Generalisation gap vs an MI quantity. data: "mi" [n], "gap" [n], optional "group" [n]."""
    mi, gap = np.asarray(_get(data, "mi"), dtype=float), np.asarray(_get(data, "gap"), dtype=float)
    groups = np.asarray(
        data.get("group", ["all"] * len(mi)) if isinstance(data, dict) else ["all"] * len(mi)
    )
    fig, ax = new_figure(ax)
    for i, g in enumerate(dict.fromkeys(groups.tolist())):
        m = groups == g
        ax.scatter(mi[m], gap[m], s=18, color=PALETTE[i % len(PALETTE)], label=str(g))
    if len(set(groups.tolist())) > 1:
        ax.legend(fontsize=7, frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("generalisation gap")
    ax.set_title(title or "Generalisation gap vs bottleneck")
    return fig


def plot_mi_by_layer(data, *, ax=None, title=None, ylabel: str = "bits") -> Figure:
    """One line per series across layers. data: "layers" [L], "series" {name: [L] values}."""
    layers = list(_get(data, "layers"))
    fig, ax = new_figure(ax)
    for i, (name, vals) in enumerate(_get(data, "series").items()):
        ax.plot(
            range(len(layers)), vals, marker="o", color=PALETTE[i % len(PALETTE)], label=str(name)
        )
    ax.set_xticks(
        range(len(layers)), [str(layer) for layer in layers], rotation=30, ha="right", fontsize=7
    )
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title or "Mutual information by layer")
    return fig
