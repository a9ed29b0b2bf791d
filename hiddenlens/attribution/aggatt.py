"""AggAtt: dataset-level views of attribution maps, binned by percentile of their localisation score.

Rao, Böhle & Schiele, "Better Understanding Differences in Attribution Methods via Systematic
Evaluations" (2022). Single example maps are cherry-picked by nature; AggAtt sorts all maps of
a method by their localisation score (grid pointing game or DiFull), cuts the ranking at fixed
percentiles (the paper's 0-2, 2-5, 5-50, 50-95, 95-98, 98-100 %) and averages the maps of each
bin, so one row of images shows a method's best, typical and worst behaviour over the dataset.
Here each positive map is first normalised to sum 1 (``normalise=True``), so the mass of a bin's
mean map inside the evaluated cell equals the bin's mean score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from hiddenlens._keys import metric_key

__all__ = ["AGGATT_BINS", "AggAtt", "aggatt"]

#: The paper's bin edges, as fractions of the ranking from the best-scoring map down.
AGGATT_BINS = (0.0, 0.02, 0.05, 0.5, 0.95, 0.98, 1.0)


@dataclass
class AggAtt:
    """edges: [n_bins + 1] fractions; maps: [n_bins, H, W] mean map per bin (best bin first);
    scores: [n_bins] mean score per bin (NaN scores count as 0); counts: [n_bins]."""

    edges: np.ndarray
    maps: np.ndarray
    scores: np.ndarray
    counts: np.ndarray

    def labels(self) -> list[str]:
        """Bin names as percent ranges, e.g. ``0-2%``."""
        pct = [f"{100 * e:g}" for e in self.edges]
        return [f"{a}-{b}%" for a, b in zip(pct[:-1], pct[1:])]

    def to_metrics(self, name: str = "aggatt_score") -> dict[str, float]:
        """``attribution/<name>/bin=0-2%``: the mean score of each bin."""
        return {
            metric_key("attribution", name, f"bin={lab}"): float(v)
            for lab, v in zip(self.labels(), self.scores)
        }


def _as_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def _check_edges(bins: Sequence[float], n: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or len(edges) < 2 or edges[0] != 0.0 or edges[-1] != 1.0:
        raise ValueError(f"bins must be increasing fractions from 0 to 1, got {tuple(bins)}")
    if np.any(np.diff(edges) <= 0):
        raise ValueError(f"bins must be strictly increasing, got {tuple(bins)}")
    cuts = np.floor(edges * n + 1e-9).astype(int)
    cuts[-1] = n
    empty = np.flatnonzero(np.diff(cuts) == 0)
    if empty.size:
        i = int(empty[0])
        need = int(np.ceil(1 / (edges[i + 1] - edges[i])))
        raise ValueError(
            f"AggAtt bin {edges[i]:g}-{edges[i + 1]:g} is empty with {n} maps; use at least "
            f"{need} maps or wider bins"
        )
    return edges, cuts


def aggatt(
    maps: np.ndarray | Tensor,
    scores: np.ndarray | Sequence[float],
    *,
    bins: Sequence[float] = AGGATT_BINS,
    normalise: bool = True,
) -> AggAtt:
    """Bin ``maps`` [N, H, W] (or [N, C, H, W], channels summed) by ``scores`` [N], best first.

    Only positive attribution is kept (the scores count positive mass). Ties keep the input
    order; NaN scores (maps without positive mass) rank last, as score 0.
    """
    a = _as_numpy(maps).astype(np.float64)
    if a.ndim == 4:
        a = a.sum(1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if a.ndim != 3 or len(s) != a.shape[0]:
        raise ValueError(
            f"maps must be [N, H, W] or [N, C, H, W] with one score each; got maps "
            f"{tuple(a.shape)} and {len(s)} scores"
        )
    edges, cuts = _check_edges(bins, len(s))
    a = np.clip(a, 0, None)
    if normalise:
        total = a.reshape(len(a), -1).sum(1)
        a = a / np.where(total > 0, total, 1.0)[:, None, None]
    s = np.nan_to_num(s, nan=0.0)
    order = np.argsort(-s, kind="stable")
    bin_maps, bin_scores, counts = [], [], []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        idx = order[lo:hi]
        bin_maps.append(a[idx].mean(0))
        bin_scores.append(s[idx].mean())
        counts.append(len(idx))
    return AggAtt(edges, np.stack(bin_maps), np.asarray(bin_scores), np.asarray(counts))
