"""Degree of information bottleneck vs generalisation gap.

Kawaguchi, Deng, Ji & Huang (2023, "How Does Information Bottleneck Help Deep Learning?")
bound the generalisation gap by the information a representation keeps about the input
beyond the label, I(X;T|Y). For a deterministic network whose label is a function of the
input, I(X;T|Y) = H(T|Y) = I(X;T) - I(T;Y), so it is computable from an information plane.
This module records the gap next to those estimates across checkpoints or models and
measures how well one tracks the other (rank and linear correlation). Saxe et al. (2018)
found no causal link between compression and generalisation; the numbers say which holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def degree_of_bottleneck(ixt: float, ity: float) -> float:
    """I(X;T|Y) = I(X;T) - I(T;Y) (bits) for a deterministic T and Y a function of X."""
    return float(ixt) - float(ity)


def bottleneck_vs_gap(gap, bottleneck) -> dict[str, float]:
    """Spearman and Pearson correlation between generalisation gaps and bottleneck values."""
    from scipy.stats import pearsonr, spearmanr

    g, b = np.asarray(gap, dtype=float), np.asarray(bottleneck, dtype=float)
    if g.shape != b.shape or g.ndim != 1:
        raise ValueError(
            f"gap and bottleneck must be 1-D of equal length, got {g.shape} and {b.shape}"
        )
    ok = np.isfinite(g) & np.isfinite(b)
    if ok.sum() < 3:
        raise ValueError(f"need at least 3 finite (gap, bottleneck) pairs, got {int(ok.sum())}")
    g, b = g[ok], b[ok]
    if np.all(g == g[0]) or np.all(b == b[0]):
        raise ValueError("gap or bottleneck is constant; correlation is undefined")
    return {
        "spearman": float(spearmanr(g, b).statistic),
        "pearson": float(pearsonr(g, b).statistic),
        "n": float(ok.sum()),
    }


@dataclass
class GeneralisationRecord:
    """Rows of (checkpoint, train/test score, MI estimates); one row per checkpoint or model."""

    rows: list[dict] = field(default_factory=list)

    def add(
        self,
        name: str,
        *,
        train_score: float,
        test_score: float,
        ixt: float,
        ity: float,
        **extra: float,
    ) -> dict:
        """Record one checkpoint; gap = train_score - test_score (e.g. accuracies)."""
        row = {
            "name": name,
            "train_score": float(train_score),
            "test_score": float(test_score),
            "gap": float(train_score) - float(test_score),
            "ixt": float(ixt),
            "ity": float(ity),
            "bottleneck": degree_of_bottleneck(ixt, ity),
            **extra,
        }
        self.rows.append(row)
        return row

    def column(self, key: str) -> np.ndarray:
        return np.array([r[key] for r in self.rows], dtype=float)

    def correlation(self, mi_key: str = "bottleneck") -> dict[str, float]:
        return bottleneck_vs_gap(self.column("gap"), self.column(mi_key))
