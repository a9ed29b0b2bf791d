"""Figures for sparse autoencoders: feature density, L0-FVU frontier, top activations."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.style import PALETTE, new_figure


def plot_density_histogram(density, *, ax=None, title: str | None = None) -> Figure:
    """Histogram of log10 firing frequency per latent; dead latents noted in the legend."""
    density = np.asarray(density, dtype=np.float64)
    fig, ax = new_figure(ax)
    live = density[density > 0]
    if live.size:
        ax.hist(np.log10(live), bins=40, color=PALETTE[0], alpha=0.85, label=f"live ({live.size})")
    ax.axvline(np.nan, color="none", label=f"dead ({int((density == 0).sum())})")
    ax.set_xlabel("log10 feature density (fraction of rows firing)")
    ax.set_ylabel("latents")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title or "Feature density")
    return fig


def plot_l0_fvu(points: list[dict], *, ax=None, title: str | None = None) -> Figure:
    """Sparsity-fidelity frontier: FVU against L0, one line per ``label``.

    points: dicts with "l0", "fvu" and optionally "label".
    """
    fig, ax = new_figure(ax)
    labels = sorted({str(p.get("label", "")) for p in points})
    for i, lab in enumerate(labels):
        pts = sorted((p["l0"], p["fvu"]) for p in points if str(p.get("label", "")) == lab)
        xs, ys = zip(*pts)
        ax.plot(xs, ys, "o-", color=PALETTE[i % len(PALETTE)], label=lab or None)
    ax.set_xscale("log")
    ax.set_xlabel("L0 (active latents per row)")
    ax.set_ylabel("FVU (fraction of variance unexplained)")
    if any(labels):
        ax.legend(frameon=False, fontsize=8)
    ax.set_title(title or "L0-FVU frontier")
    return fig


def plot_top_activations(rows: list[dict], *, ax=None, title: str | None = None) -> Figure:
    """Horizontal bars of a latent's top activations, labelled with their token context."""
    fig, ax = new_figure(ax, figsize=(7.0, 0.35 * max(len(rows), 3) + 1.0))
    labels = [str(r.get("context", r.get("token", r.get("row", "")))) for r in rows]
    labels = [lab if len(lab) < 70 else lab[:67] + "..." for lab in labels]
    values = [float(r["activation"]) for r in rows]
    y = np.arange(len(rows))[::-1]
    ax.barh(y, values, color=PALETTE[1])
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("activation")
    ax.set_title(title or "Top activations")
    return fig


def plot_decoder_cosines(
    decoder, *, latents=None, max_latents: int = 128, title: str | None = None
):
    """Interactive heatmap of cosines between decoder directions (rows of ``W_dec``).

    Near-duplicate latents (feature splitting or redundancy) show as bright off-diagonal
    cells. ``latents`` picks which ones (default: the first ``max_latents``); they are
    ordered by their strongest partner so that clusters sit together.
    """
    import plotly.graph_objects as go

    from hiddenlens.viz.style import PLOTLY_TEMPLATE

    w = np.asarray(decoder, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"decoder must be 2-D [n_latents, d], got shape {w.shape}")
    idx = np.arange(min(max_latents, len(w))) if latents is None else np.asarray(latents)
    if idx.size == 0 or idx.max() >= len(w) or idx.min() < 0:
        raise ValueError(f"latent indices must lie in [0, {len(w)}) and not be empty")
    unit = w[idx] / np.maximum(np.linalg.norm(w[idx], axis=1, keepdims=True), 1e-12)
    cos = unit @ unit.T
    off = cos - np.eye(len(idx))
    order = np.lexsort((-off.max(1), off.argmax(1)))
    cos, labels = cos[np.ix_(order, order)], [str(int(i)) for i in idx[order]]
    fig = go.Figure(
        go.Heatmap(
            z=cos,
            x=labels,
            y=labels,
            zmin=-1,
            zmax=1,
            colorscale="RdBu_r",
            colorbar={"title": "cosine"},
            hovertemplate="latent %{y} vs %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        template=PLOTLY_TEMPLATE,
        height=560,
        title=title or f"Decoder cosine similarity ({len(idx)} latents)",
        xaxis_title="latent",
        yaxis_title="latent",
    )
    return fig
