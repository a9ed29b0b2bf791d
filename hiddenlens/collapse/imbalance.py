"""Neural-collapse geometry under class imbalance.

"Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data" (Dang et al.,
ICML 2023): with imbalanced classes the class means and classifier rows become orthogonal
rather than a simplex ETF, with norms that depend on the class counts. Fang et al. (PNAS
2021) report the opposite trend in non-linear nets with cross-entropy — "minority
collapse", minority classifier rows drawing together. These metrics report what is seen
without assuming either direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hiddenlens._keys import metric_key
from hiddenlens.collapse.metrics import parse_classifier
from hiddenlens.collapse.stats import ClassStats


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def _mean_cos(u: np.ndarray, idx_a: np.ndarray, idx_b: np.ndarray | None = None) -> float:
    """Mean cosine within a group (idx_b None) or between two groups."""
    un = u / np.linalg.norm(u, axis=1, keepdims=True)
    g = un @ un.T
    if idx_b is None:
        if idx_a.size < 2:
            return float("nan")
        sub = g[np.ix_(idx_a, idx_a)]
        return float(sub[np.triu_indices(idx_a.size, 1)].mean())
    if idx_a.size == 0 or idx_b.size == 0:
        return float("nan")
    return float(g[np.ix_(idx_a, idx_b)].mean())


def imbalance_metrics(
    stats: ClassStats,
    *,
    classifier: Any = None,
    minority: Any = None,
    centre: bool = False,
) -> dict[str, float]:
    """Norms vs class counts, cosines and head-vs-tail summaries, as a flat dict.

    minority: class ids treated as tail; default: classes with fewer than half the rows
        of the largest class.
    centre: subtract the global mean from the class means first (the deep-linear analysis
        uses raw means; centred means are what NC2 uses).

    Keys (each ``collapse/<metric>[/<class>]``): count/<c>, mean_norm/<c>,
    [classifier_norm/<c>]; corr_mean_norm_count and
    corr_classifier_norm_count (Spearman over classes); cos_means_{head,tail,head_tail} and
    cos_classifier_{head,tail,head_tail} (mean pairwise cosines); mean_norm_tail_over_head
    and classifier_norm_tail_over_head; n_tail. NaN where a group is too small.
    """
    counts = stats.counts.astype(float)
    means = stats.centred_means if centre else stats.means
    if minority is None:
        tail_mask = counts < 0.5 * counts.max()
    else:
        tail_mask = np.isin(stats.classes, np.asarray(minority))
    tail, head = np.flatnonzero(tail_mask), np.flatnonzero(~tail_mask)
    out: dict[str, float] = {metric_key("collapse", "n_tail"): float(tail.size)}
    vecs = {"mean": means}
    if classifier is not None:
        w, _ = parse_classifier(classifier)
        vecs["classifier"] = w[stats.classes]
    for key, v in vecs.items():
        norms = np.linalg.norm(v, axis=1)
        for c, nrm in zip(stats.classes.tolist(), norms):
            out[metric_key("collapse", f"{key}_norm", str(c))] = float(nrm)
        out[metric_key("collapse", f"corr_{key}_norm_count")] = _spearman(norms, counts)
        ratio = norms[tail].mean() / norms[head].mean() if tail.size and head.size else np.nan
        out[metric_key("collapse", f"{key}_norm_tail_over_head")] = float(ratio)
        plural = "means" if key == "mean" else key
        out[metric_key("collapse", f"cos_{plural}_head")] = _mean_cos(v, head)
        out[metric_key("collapse", f"cos_{plural}_tail")] = _mean_cos(v, tail)
        out[metric_key("collapse", f"cos_{plural}_head_tail")] = _mean_cos(v, head, tail)
    for c, n in zip(stats.classes.tolist(), counts):
        out[metric_key("collapse", "count", str(c))] = float(n)
    return out


def cosine_matrix(vectors: Any) -> np.ndarray:
    """Pairwise cosines of class vectors [C, d] -> [C, C]."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return v @ v.T
