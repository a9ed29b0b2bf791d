"""Figures for sparse autoencoders: feature density, the sparsity-fidelity frontier (L0
against FVU or the spliced score, as SAEBench, Karvonen et al. 2025, plots it), top
activations and decoder cosines; the plotly twins carry an ``_interactive`` suffix."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.style import PALETTE, PLOTLY_TEMPLATE, legend_outside, new_figure


def _density(density) -> tuple[np.ndarray, np.ndarray, int]:
    density = np.asarray(density, dtype=np.float64).reshape(-1)
    if density.size == 0 or (density < 0).any() or (density > 1).any():
        raise ValueError("density must be a non-empty array of firing fractions in [0, 1]")
    live = density[density > 0]
    return density, np.log10(live), int((density == 0).sum())


def plot_density_histogram(density, *, ax=None, title: str | None = None) -> Figure:
    """Histogram of log10 firing frequency per latent; the count of latents that never fired
    on these rows is written in the legend (it is a count, not the dead fraction)."""
    density, log_live, dead = _density(density)
    fig, ax = new_figure(ax)
    if log_live.size:
        ax.hist(
            log_live,
            bins=40,
            color=PALETTE[0],
            alpha=0.85,
            label=f"fired: {log_live.size:,} latents",
        )
    ax.axvline(np.nan, color="none", label=f"never fired: {dead:,} of {density.size:,}")
    ax.set_xlabel("log10 feature density (fraction of rows firing)")
    ax.set_ylabel("latents")
    legend_outside(ax)
    ax.set_title(title or "Feature density")
    return fig


def plot_density_histogram_interactive(density, *, ax=None, title: str | None = None):
    """The plotly twin of :func:`plot_density_histogram` (hover: bin range and latent count)."""
    import plotly.graph_objects as go

    if ax is not None:
        raise ValueError(
            "plot_density_histogram_interactive draws a plotly figure; ax must be None"
        )
    density, log_live, dead = _density(density)
    fig = go.Figure(
        go.Histogram(
            x=log_live,
            nbinsx=40,
            marker_color=PALETTE[0],
            name=f"fired: {log_live.size:,}",
            hovertemplate="log10 density %{x}<br>%{y} latents<extra></extra>",
        )
    )
    fig.update_layout(
        template=PLOTLY_TEMPLATE,
        height=360,
        title=title or f"Feature density (never fired: {dead:,} of {density.size:,})",
        xaxis_title="log10 feature density (fraction of rows firing)",
        yaxis_title="latents",
    )
    return fig


def plot_l0_fvu(points: list[dict], *, ax=None, title: str | None = None) -> Figure:
    """Sparsity-fidelity frontier: FVU against L0, one line per ``label`` (see
    :func:`plot_sae_frontier` for the general frontier)."""
    return plot_sae_frontier(
        {"points": points, "y": "fvu"}, ax=ax, title=title or "L0-FVU frontier"
    )


_Y_LABELS = {
    "fvu": "FVU (fraction of variance unexplained; lower is better)",
    "spliced_score": "spliced score (fraction recovered; higher is better)",
}


def _frontier_groups(data) -> tuple[list[dict], str, dict[str, list[tuple[float, float, str]]]]:
    points = data["points"] if isinstance(data, dict) else data
    y = data.get("y", "fvu") if isinstance(data, dict) else "fvu"
    groups: dict[str, list[tuple[float, float, str]]] = {}
    for p in points:
        if p.get(y) is None or p.get("l0") is None:
            continue
        groups.setdefault(str(p.get("label", "")), []).append(
            (float(p["l0"]), float(p[y]), str(p.get("name", "")))
        )
    if not groups:
        raise ValueError(f"no point has both 'l0' and {y!r}; got {len(points)} points")
    return points, y, {k: sorted(v) for k, v in sorted(groups.items())}


def plot_sae_frontier(data, *, ax=None, title: str | None = None) -> Figure:
    """L0 (log x) against a fidelity metric, one point per SAE, one colour per label.

    data: a list of dicts with "l0", the y metric (default "fvu") and optionally "label"
    (e.g. the architecture) and "name"; or ``{"points": [...], "y": "spliced_score"}``.
    Points of one label are joined in L0 order, as SAEBench draws its frontiers.
    """
    _, y, groups = _frontier_groups(data)
    fig, ax = new_figure(ax)
    for i, (label, pts) in enumerate(groups.items()):
        xs, ys, _ = zip(*pts)
        ax.plot(xs, ys, "o-", color=PALETTE[i % len(PALETTE)], label=label or None)
    ax.set_xscale("log")
    ax.set_xlabel("L0 (active latents per row)")
    ax.set_ylabel(_Y_LABELS.get(y, y))
    legend_outside(ax)
    ax.set_title(title or f"SAE frontier: L0 vs {y}")
    return fig


def plot_sae_frontier_interactive(data, *, ax=None, title: str | None = None):
    """The plotly twin of :func:`plot_sae_frontier` (hover names each SAE)."""
    import plotly.graph_objects as go

    if ax is not None:
        raise ValueError("plot_sae_frontier_interactive draws a plotly figure; ax must be None")
    _, y, groups = _frontier_groups(data)
    fig = go.Figure()
    for i, (label, pts) in enumerate(groups.items()):
        xs, ys, names = zip(*pts)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                name=label or "SAE",
                text=names,
                marker={"color": PALETTE[i % len(PALETTE)], "size": 9},
                hovertemplate="%{text}<br>L0 %{x:.3g}<br>" + y + " %{y:.4g}<extra></extra>",
            )
        )
    fig.update_layout(
        template=PLOTLY_TEMPLATE,
        height=400,
        xaxis_type="log",
        title=title or f"SAE frontier: L0 vs {y}",
        xaxis_title="L0 (active latents per row)",
        yaxis_title=_Y_LABELS.get(y, y),
    )
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
    ax.set_ylabel("token context")
    ax.set_title(title or "Top activations")
    return fig


def plot_decoder_cosines(
    decoder, *, latents=None, max_latents: int = 128, ax=None, title: str | None = None
):
    """Interactive heatmap of cosines between decoder directions (rows of ``W_dec``).

    Near-duplicate latents (feature splitting or redundancy) show as bright off-diagonal
    cells. ``latents`` picks which ones (default: the first ``max_latents``); they are
    ordered by their strongest partner so that clusters sit together.
    """
    import plotly.graph_objects as go

    if ax is not None:
        raise ValueError("plot_decoder_cosines draws a plotly figure; ax must be None")
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


def plot_edit_success(data, *, ax=None, title: str | None = None) -> Figure:
    """Edit success against the number of latents edited (Makelov et al. 2024's sparse
    control): one step line per dictionary, the share of items whose output follows the
    new attribute value with at most k latents copied from the counterfactual.

    data: {dictionary name: ``EditSearchResult`` (``hiddenlens.sae.principled_search``) or
    a [max_latents + 1] curve}. A result's ceiling (every differing latent copied) is a
    dotted line in its colour.
    """
    if not data:
        raise ValueError("plot_edit_success needs at least one {name: curve}")
    fig, ax = new_figure(ax)
    for i, (name, res) in enumerate(data.items()):
        curve = np.asarray(res.success_curve() if hasattr(res, "success_curve") else res, float)
        if curve.ndim != 1 or curve.size == 0:
            raise ValueError(f"curve of {name!r} must be 1-D [max_latents + 1], got {curve.shape}")
        color = PALETTE[i % len(PALETTE)]
        ax.step(np.arange(curve.size), curve, where="post", marker="o", ms=3, color=color,
                label=str(name))  # fmt: skip
        full = getattr(res, "success_full", None)
        if full is not None:
            ax.axhline(full, color=color, linestyle=":", linewidth=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("latents edited (greedy, copied from the counterfactual)")
    ax.set_ylabel("edit success (output follows v')")
    legend_outside(ax)
    ax.set_title(title or "edit success vs number of latents")
    return fig
