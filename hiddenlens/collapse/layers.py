"""Per-layer collapse and layer-in vs layer-out within-class variability.

"Perturbation Analysis of Neural Collapse" (Tirer, Huang & Niles-Weed, ICML 2023): in real
networks collapse is inexact, but each layer reduces within-class variability relative to
its input features. The ratio is measured scale-free, as the change of
Tr(Σ_W)/Tr(Σ_B) (and of NC1) from a layer's input to its output: < 1 means the layer
made classes tighter relative to their separation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hiddenlens.collapse.metrics import check_stats, nc1, stats_metrics, with_suffix
from hiddenlens.collapse.stats import ClassStats, accumulate


def within_between(stats: ClassStats) -> float:
    """Tr(Σ_W)/Tr(Σ_B): within-class spread relative to class-mean spread."""
    return float(np.trace(stats.sigma_w) / np.trace(stats.sigma_b))


def variability_ratio(stats_in: ClassStats, stats_out: ClassStats) -> dict[str, float]:
    """Layer-out over layer-in variability: {"var_ratio", "nc1_ratio"} (< 1: reduced)."""
    if stats_in.n != stats_out.n or not np.array_equal(stats_in.classes, stats_out.classes):
        raise ValueError("layer-in and layer-out statistics must come from the same rows")
    return {
        "var_ratio": within_between(stats_out) / within_between(stats_in),
        "nc1_ratio": nc1(stats_out)["nc1"] / nc1(stats_in)["nc1"],
    }


def layer_stats(layers: Mapping[str, Any], labels: Any = None, **kw: Any) -> dict[str, ClassStats]:
    """ClassStats per layer from {name: features} (any source accepted by ``metrics``)."""
    return {name: accumulate(feats, labels, **kw) for name, feats in layers.items()}


def layer_metrics(
    stats_by_layer: Mapping[str, ClassStats],
    *,
    order: Sequence[str] | None = None,
    classifiers: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """NC metrics per layer ("collapse/nc1/<layer>") and the variability ratio of each layer
    relative to the previous one in ``order`` ("collapse/var_ratio/<layer>", ...)."""
    order = list(order or stats_by_layer)
    classifiers = classifiers or {}
    out: dict[str, float] = {}
    for name in order:
        check_stats(stats_by_layer[name])
        m = stats_metrics(stats_by_layer[name], classifier=classifiers.get(name))
        out.update(with_suffix(m, name))
    for prev, name in zip(order[:-1], order[1:]):
        r = variability_ratio(stats_by_layer[prev], stats_by_layer[name])
        out.update(with_suffix(r, name))
    return out
