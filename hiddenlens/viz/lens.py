"""Logit lens vs tuned lens by layer (Belrose et al. 2023, "Eliciting Latent Predictions from
Transformers with the Tuned Lens", Fig. 2/3): per-layer KL to the model's final next-token
distribution, or next-token perplexity, one line per lens, drawn by the one layer-curve
chart (:func:`hiddenlens.viz.layers.plot_layer_curves`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.layers import LayerCurves, plot_layer_curves

METRICS = ("kl", "perplexity")


def _get(data: Any, name: str):
    return data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)


def lens_curves(data: Any, metric: str = "kl") -> LayerCurves:
    """LayerCurves of a lens comparison: ``data`` has ``hooks`` and ``kl_logit`` /
    ``kl_tuned`` (``metric="kl"``) or ``ppl_logit`` / ``ppl_tuned`` and optionally
    ``ppl_final`` (``metric="perplexity"``), as attributes or keys."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    short = "kl" if metric == "kl" else "ppl"
    logit, tuned = _get(data, f"{short}_logit"), _get(data, f"{short}_tuned")
    hooks = _get(data, "hooks")
    if hooks is None or logit is None or tuned is None:
        raise ValueError(
            f"a lens comparison for {metric!r} needs hooks, {short}_logit and {short}_tuned "
            f"(a LensComparison{' evaluated with next_tokens' if short == 'ppl' else ''})"
        )
    final = _get(data, "ppl_final") if short == "ppl" else None
    return LayerCurves(
        list(hooks),
        {"logit lens": np.asarray(logit, float), "tuned lens": np.asarray(tuned, float)},
        reference=final,
        reference_label=None if final is None else "model output",
        ylabel="KL(final || lens), nats" if short == "kl" else "next-token perplexity",
        logy=True,
    )


def plot_lens_comparison(data, *, metric: str = "kl", ax=None, title: str | None = None) -> Figure:
    """Per-layer KL to the final distribution (or perplexity) of the logit and tuned lens;
    ``data`` as :func:`lens_curves` takes (a ``LensComparison``). Log y axis: the final
    layer's KL (0 by construction) is not drawn."""
    curves = lens_curves(data, metric)
    return plot_layer_curves(curves, ax=ax, title=title or f"logit lens vs tuned lens: {metric}")
