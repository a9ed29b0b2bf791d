"""Probe figures: layer curves with confidence bands, selectivity, MDL compression, CKA.

Inputs are arrays or any object with ``hook_points``, ``score``, ``ci_low``, ``ci_high``
(a ``hiddenlens.probe.SweepResult`` fits; this module never imports the probe package).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.style import PALETTE, SEQUENTIAL_CMAP, new_figure


def _short(names: Sequence[str]) -> list[str]:
    """'encoder.layer.3' -> 'layer.3': keep the tick labels readable."""
    return [".".join(str(n).split(".")[-2:]) for n in names]


def _field(curve, key):
    return np.asarray(curve[key] if isinstance(curve, Mapping) else getattr(curve, key), float)


def plot_layer_curves(
    curves: Mapping[str, object],
    *,
    chance: float | Mapping[str, float] | None = None,
    ylabel: str = "held-out accuracy",
    ax=None,
    title: str | None = None,
) -> Figure:
    """One line per probed property: score by layer with its confidence band.

    curves: name -> result with hook_points / score / ci_low / ci_high (objects or dicts);
    chance: a level drawn dashed (one for all, or per name).
    """
    if not curves:
        raise ValueError("plot_layer_curves needs at least one curve")
    fig, ax = new_figure(ax, figsize=(7.0, 4.2))
    hooks = None
    for i, (name, c) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        hooks = list(c["hook_points"] if isinstance(c, Mapping) else c.hook_points)
        x = np.arange(len(hooks))
        ax.plot(x, _field(c, "score"), marker="o", color=color, label=name)
        ax.fill_between(x, _field(c, "ci_low"), _field(c, "ci_high"), color=color, alpha=0.2)
        level = chance.get(name) if isinstance(chance, Mapping) else chance
        if level is not None:
            ax.axhline(level, color=color, linestyle=":", linewidth=1)
    ax.set_xticks(np.arange(len(hooks)), _short(hooks), rotation=30, ha="right")
    ax.set_xlabel("hook point")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, frameon=False, ncol=2)
    ax.set_title(title or "Probe score by layer (band: 95% bootstrap CI; dotted: chance)")
    return fig


def plot_selectivity(
    hook_points: Sequence[str],
    selectivity: Mapping[str, Sequence[float]],
    *,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Task minus control-task accuracy by layer, one line per property."""
    fig, ax = new_figure(ax, figsize=(7.0, 3.6))
    x = np.arange(len(hook_points))
    for i, (name, s) in enumerate(selectivity.items()):
        ax.plot(x, np.asarray(s, float), marker="s", color=PALETTE[i % len(PALETTE)], label=name)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, _short(hook_points), rotation=30, ha="right")
    ax.set_ylabel("selectivity (task - control)")
    ax.legend(fontsize=8, frameon=False, ncol=2)
    ax.set_title(title or "Selectivity (Hewitt & Liang control tasks)")
    return fig


def plot_mdl(
    hook_points: Sequence[str],
    compression: Mapping[str, Sequence[float]],
    *,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Online-code compression (uniform codelength / online codelength) by layer."""
    fig, ax = new_figure(ax, figsize=(7.0, 3.6))
    x = np.arange(len(hook_points))
    # a "<name> (control)" series shares its task's colour, dashed, so pairs read together
    bases = list(dict.fromkeys(n.removesuffix(" (control)") for n in compression))
    for name, c in compression.items():
        base = name.removesuffix(" (control)")
        control = base != name
        ax.plot(
            x,
            np.asarray(c, float),
            marker="v" if control else "^",
            linestyle="--" if control else "-",
            alpha=0.6 if control else 1.0,
            color=PALETTE[bases.index(base) % len(PALETTE)],
            label=name,
        )
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, _short(hook_points), rotation=30, ha="right")
    ax.set_ylabel("compression (x)")
    ax.legend(fontsize=8, frameon=False, ncol=2)
    ax.set_title(title or "MDL online code: compression by layer (1 = no better than uniform)")
    return fig


def plot_cka_matrix(
    matrix,
    rows: Sequence[str],
    cols: Sequence[str] | None = None,
    *,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Heatmap of a CKA matrix with the values written in the cells."""
    M = np.asarray(matrix, float)
    cols = rows if cols is None else cols
    if M.shape != (len(rows), len(cols)):
        raise ValueError(f"matrix shape {M.shape} does not match {len(rows)} x {len(cols)} labels")
    fig, ax = new_figure(ax, figsize=(1.0 + 0.75 * len(cols), 0.8 + 0.65 * len(rows)))
    ax.grid(False)
    im = ax.imshow(M, cmap=SEQUENTIAL_CMAP, vmin=min(0.0, np.nanmin(M)), vmax=1.0)
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            ax.text(
                j,
                i,
                f"{M[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if M[i, j] < 0.6 else "black",
            )
    ax.set_xticks(np.arange(len(cols)), _short(cols), rotation=30, ha="right")
    ax.set_yticks(np.arange(len(rows)), _short(rows))
    fig.colorbar(im, ax=ax, shrink=0.8, label="linear CKA")
    ax.set_title(title or "Linear CKA between layers")
    return fig
