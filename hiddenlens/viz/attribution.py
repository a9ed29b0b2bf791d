"""Figures for attribution results: heat maps, token maps, patching grids, curves, lenses.

Every function takes plain arrays (never an analyzer object) and returns a matplotlib
``Figure`` built without pyplot; nothing is shown or saved here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from hiddenlens.viz.style import (
    DIVERGING_CMAP,
    PALETTE,
    SEQUENTIAL_CMAP,
    annotate_cells,
    contrast_text,
    finish_axes,
    new_figure,
    short_names,
)

__all__ = [
    "plot_image_attributions",
    "plot_token_attributions",
    "plot_patching",
    "plot_back_patching",
    "plot_layer_scores",
    "plot_curves",
    "plot_metric_by_k",
    "plot_images",
    "plot_logit_lens",
    "plot_head_dla",
    "plot_distributions",
]


def _sym_norm(a: np.ndarray) -> TwoSlopeNorm:
    m = float(np.nanmax(np.abs(a))) or 1.0
    return TwoSlopeNorm(vmin=-m, vcenter=0.0, vmax=m)


def _no_ax(ax, name: str) -> None:
    if ax is not None:
        raise ValueError(f"{name} draws a grid of panels in its own figure; ax must be None")


def plot_image_attributions(
    attributions: Mapping[str, np.ndarray],
    *,
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Rows: the inputs, then one row per method. images: [n, H, W]; each map: [n, H, W]."""
    _no_ax(ax, "plot_image_attributions")
    images = np.asarray(images)
    n = images.shape[0]
    rows = 1 + len(attributions)
    fig = Figure(figsize=(1.3 * n + 1.2, 1.9 * rows), layout="constrained")
    axes = fig.subplots(rows, n, squeeze=False)
    for j in range(n):
        axes[0, j].imshow(images[j], cmap="gray_r")
        axes[0, j].set_title(titles[j] if titles else "", fontsize=8)
        for i, (name, maps) in enumerate(attributions.items(), start=1):
            a = np.asarray(maps[j])
            axes[i, j].imshow(a, cmap=DIVERGING_CMAP, norm=_sym_norm(a))
            if j == 0:
                axes[i, j].set_ylabel(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


def _token_lines(tokens, width_of, max_width: float = 0.97):
    """Lay each text's tokens out in lines that fit the axes width: [(text, token, x)]."""
    lines, placed = 0, []
    for t, toks in enumerate(tokens):
        x = 0.0
        for k, tok in enumerate(toks):
            w = width_of(tok)
            if x > 0 and x + w > max_width:
                lines, x = lines + 1, 0.0
            placed.append((t, k, x, lines))
            x += w
        lines += 1
    return placed, lines


def plot_token_attributions(
    scores: Sequence[np.ndarray],
    *,
    tokens: Sequence[Sequence[str]],
    ax=None,
    title: str | None = None,
) -> Figure:
    """Each text's tokens in boxes coloured by score (red +, blue -, one scale per text).

    Long texts wrap onto further lines (the figure grows to hold them) and each token's
    text is black or white, whichever reads on its box's colour.
    """
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} token lists but {len(scores)} score arrays")

    def width(tok):
        return 0.0115 * (len(tok) + 1.5)

    placed, n_lines = _token_lines(tokens, width)
    fig, ax = new_figure(ax, figsize=(9.0, 0.32 * n_lines + 0.7))
    ax.set_axis_off()
    cm = matplotlib.colormaps[DIVERGING_CMAP]
    norms = [_sym_norm(np.asarray(sc, dtype=float)) for sc in scores]
    for t, k, x, line in placed:
        value = float(np.asarray(scores[t], dtype=float)[k])
        face = cm(norms[t](value))
        ax.text(
            x,
            1.0 - (line + 0.5) / n_lines,
            tokens[t][k],
            fontsize=8,
            va="center",
            ha="left",
            family="monospace",
            color=contrast_text(face),
            bbox={"facecolor": face, "edgecolor": "none", "pad": 1.5},
            transform=ax.transAxes,
        )
    if title:
        ax.set_title(title)
    return fig


def plot_patching(
    effects: Mapping[str, np.ndarray],
    *,
    position_labels: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Heat map of patching effects: hook points (rows) x positions (columns)."""
    names = list(effects)
    grid = np.vstack([np.ravel(effects[n]) for n in names])
    fig, ax = new_figure(ax, figsize=(max(4.0, 0.45 * grid.shape[1] + 2.5), 0.4 * len(names) + 1.5))
    im = ax.imshow(grid, cmap=DIVERGING_CMAP, norm=_sym_norm(grid), aspect="auto")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if position_labels is not None:
        ax.set_xticks(range(grid.shape[1]), position_labels, rotation=60, fontsize=7)
    ax.set_xlabel("position")
    ax.set_ylabel("hook point")
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title or "effect of patching")
    return fig


def plot_back_patching(
    data, *, labels: Sequence[str] | None = None, ax=None, title: str | None = None
) -> Figure:
    """Back-patching heat map: source layer j (rows) x target layer i (columns); only the
    i < j triangle holds values (the other cells stay blank).

    data: a ``BackPatchingSweep`` (``hiddenlens.attribution.patching``; cells are the share
    of the failed queries each back-patch fixes, and the title gives the share fixed by
    any) or a [n, n] matrix of metric[j, i] (``BackPatchingResult.metric``) with NaN
    outside the triangle. labels: layer names (default: the sweep's hook points).
    """
    sweep = hasattr(data, "fixed_fraction")
    matrix = np.asarray(data.fixed_fraction() if sweep else data, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"back-patching matrix must be square [n, n], got {matrix.shape}")
    labels = list(labels if labels is not None else getattr(data, "hook_points", []))
    if len(labels) != matrix.shape[0]:
        raise ValueError(f"{len(labels)} labels for a {matrix.shape[0]}-layer matrix")
    shown = np.where(np.tri(len(labels), k=-1, dtype=bool), matrix, np.nan)
    n = len(labels)
    fig, ax = new_figure(ax, figsize=(0.5 * n + 3.2, 0.45 * n + 2.2))
    vmax = 1.0 if sweep else None
    im = ax.imshow(shown, cmap=SEQUENTIAL_CMAP, origin="lower", vmin=0.0 if sweep else None,
                   vmax=vmax)  # fmt: skip
    if n <= 16:
        annotate_cells(ax, im, shown, fmt="{:.2f}", fontsize=7)
    ax.plot([-0.5, n - 0.5], [-0.5, n - 0.5], color="0.6", linewidth=0.8)  # the i = j diagonal
    names = short_names(labels)
    ax.set_xticks(range(n), names, rotation=60, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("target layer i (injected into)")
    ax.set_ylabel("source layer j (read from)")
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.8, label="failed queries fixed" if sweep else "metric")
    if title is None and sweep:
        n_failed = int(data.failed.sum())
        title = (
            f"back-patching: {data.fixed_by_any():.0%} of {n_failed} failed queries fixed"
            if n_failed
            else "back-patching: no failed queries"
        )
    ax.set_title(title or "back-patching")
    return fig


def plot_layer_scores(
    scores: Mapping[str, float],
    *,
    ylabel: str = "attribution",
    notes: Mapping[str, str] | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Bar chart of one number per hook point (e.g. total layer attribution).

    notes: hook -> a word written at its bar, e.g. why a bar is zero by construction.
    """
    fig, ax = new_figure(ax, figsize=(6.0, 3.2))
    names = list(scores)
    ax.bar(range(len(names)), [scores[n] for n in names], color=PALETTE[0])
    for name, note in (notes or {}).items():
        if name not in scores:
            raise ValueError(f"note for {name!r}, which is not one of the bars {names}")
        ax.annotate(
            note,
            (names.index(name), scores[name]),
            xytext=(0, 4),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=7,
            rotation=90,
            color="0.3",
        )
    ax.set_xticks(range(len(names)), short_names(names), rotation=30, fontsize=8, ha="right")
    finish_axes(ax, xlabel="layer", ylabel=ylabel, title=title)
    return fig


def plot_curves(
    curves: Mapping[str, np.ndarray],
    *,
    x: np.ndarray,
    xlabel: str = "fraction of features",
    ylabel: str = "score",
    ax=None,
    title: str | None = None,
) -> Figure:
    """Line per named curve ([len(x)] or [n, len(x)], averaged) — deletion / insertion curves."""
    fig, ax = new_figure(ax)
    for i, (name, c) in enumerate(curves.items()):
        c = np.asarray(c)
        ax.plot(
            x,
            c.mean(0) if c.ndim == 2 else c,
            label=name,
            color=PALETTE[i % len(PALETTE)],
            linestyle="--" if "insertion" in name else "-",
        )
    finish_axes(ax, xlabel=xlabel, ylabel=ylabel, title=title, legend=True)
    return fig


def plot_metric_by_k(
    series: Mapping[str, Sequence[float]],
    *,
    ks: Sequence[float],
    ylabel: str = "DiffROAR",
    xlabel: str = "fraction of features kept (k)",
    ax=None,
    title: str | None = None,
) -> Figure:
    """Line per model / method of a metric against k (DiffROAR against the kept fraction;
    missingness bias against the mask size)."""
    fig, ax = new_figure(ax)
    for i, (name, vals) in enumerate(series.items()):
        ax.plot(ks, vals, marker="o", label=name, color=PALETTE[i % len(PALETTE)])
    ax.axhline(0.0, color="#888888", linewidth=0.8)
    finish_axes(ax, xlabel=xlabel, ylabel=ylabel, title=title, legend=True)
    return fig


def plot_images(
    images: np.ndarray,
    *,
    titles: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """A row of images [n, H, W] (feature visualisations, facet means)."""
    _no_ax(ax, "plot_images")
    images = np.asarray(images)
    n = images.shape[0]
    fig = Figure(figsize=(1.5 * n + 0.5, 1.9), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for j, ax in enumerate(axes):
        ax.imshow(images[j], cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:
            ax.set_title(titles[j], fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_logit_lens(
    ranks: np.ndarray, *, labels: Sequence[str], ax=None, title: str | None = None
) -> Figure:
    """Rank of the tracked token at each residual stage (log scale), one line per example."""
    fig, ax = new_figure(ax)
    ranks = np.asarray(ranks)
    for b in range(ranks.shape[1]):
        ax.plot(range(len(labels)), ranks[:, b] + 1, marker="o", color=PALETTE[b % len(PALETTE)])
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, rotation=45, fontsize=7)
    ax.set_ylabel("rank + 1")
    ax.set_xlabel("residual stage")
    ax.set_title(title or "logit lens")
    return fig


def _dla_grid(data) -> tuple[np.ndarray, list[str], dict[str, float]]:
    """(grid [n_layers, columns], column labels, terms outside the grid) of a DLA result
    (anything with ``head_grid()`` / ``rest()``) or of a plain [n_layers, n_heads] array."""
    if hasattr(data, "head_grid"):
        grid, cols = data.head_grid()
        rest = data.rest() if hasattr(data, "rest") else {}
        return np.asarray(grid, dtype=float), list(cols), dict(rest)
    grid = np.asarray(data, dtype=float)
    if grid.ndim != 2 or 0 in grid.shape:
        raise ValueError(
            f"plot_head_dla takes a DirectLogitAttribution or a [n_layers, n_heads] array; "
            f"got an array of shape {grid.shape}"
        )
    return grid, [f"H{h}" for h in range(grid.shape[1])], {}


def plot_head_dla(data, *, ax=None, title: str | None = None) -> Figure:
    """Direct logit attribution per attention head: layers (rows) x heads (columns), then
    each layer's attention bias (b_O) and MLP, on one symmetric red-blue scale.

    data: a ``DirectLogitAttribution`` (``hiddenlens.attribution.lens``) or an array
    [n_layers, n_heads]. The terms outside the grid (embeddings, final-norm bias,
    unembedding bias) are written under the axes, so every term of the logit (difference)
    is on the figure.
    """
    grid, cols, rest = _dla_grid(data)
    n_layers, n_cols = grid.shape
    fig, ax = new_figure(ax, figsize=(0.55 * n_cols + 2.6, 0.42 * n_layers + 1.8))
    im = ax.imshow(grid, cmap=DIVERGING_CMAP, norm=_sym_norm(grid), aspect="auto")
    if grid.size <= 400:
        annotate_cells(ax, im, grid, fmt="{:+.2f}", fontsize=7)
    n_heads = n_cols - 2 if cols[-2:] == ["b_O", "MLP"] else n_cols
    if n_heads < n_cols:  # a gap between the heads and the per-layer b_O / MLP columns
        ax.axvline(n_heads - 0.5, color="white", linewidth=3)
    ax.set_xticks(range(n_cols), cols, fontsize=7)
    ax.set_yticks(range(n_layers), [f"L{i}" for i in range(n_layers)], fontsize=7)
    ax.grid(False)
    note = "  ".join(f"{k} {v:+.2f}" for k, v in rest.items())
    ax.set_xlabel("head" + (f"\n{note}" if note else ""), fontsize=8)
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, shrink=0.8, label="direct logit contribution")
    ax.set_title(title or "direct logit attribution per head")
    return fig


def plot_distributions(
    values: Mapping[str, np.ndarray],
    *,
    xlabel: str = "value",
    bins: int = 20,
    vline: float | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Overlaid histograms, one per name (e.g. per-image pointing-game scores per model)."""
    fig, ax = new_figure(ax)
    arrays = [np.asarray(v, dtype=float) for v in values.values()]
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(1)
    edges = np.linspace(finite.min(), finite.max() + 1e-9, bins + 1)
    for i, (name, a) in enumerate(zip(values, arrays)):
        ax.hist(
            a[np.isfinite(a)], bins=edges, alpha=0.55, label=name, color=PALETTE[i % len(PALETTE)]
        )
    if vline is not None:
        ax.axvline(vline, color="#555555", linestyle=":", linewidth=1)
    finish_axes(ax, xlabel=xlabel, ylabel="count", title=title, legend=True)
    return fig
