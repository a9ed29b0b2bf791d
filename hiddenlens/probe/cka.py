"""Centred kernel alignment (Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of Neural
Network Representations Revisited") with a linear kernel, and its debiased form (the
unbiased HSIC estimator of Song et al. 2012, as used by Nguyen, Raghu & Kornblith 2021).

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)      on column-centred X, Y.

Everything is computed in feature space (O(n d^2)), never with n x n Gram matrices.  CKA is
invariant to orthogonal transforms and isotropic scaling of either side, not to arbitrary
invertible linear maps.  The biased estimator is inflated for few rows and many features;
the debiased one is not (and can be slightly negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hiddenlens._keys import metric_key, pair
from hiddenlens.store.source import read_hooks


def _centred(X) -> torch.Tensor:
    X = torch.from_numpy(np.array(X, dtype=np.float64))  # a copy: store rows are read-only
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array [n, d], got shape {tuple(X.shape)}")
    if not torch.isfinite(X).all():
        raise ValueError("features contain NaN or inf")
    return X - X.mean(0)


def _hsic_terms(X: torch.Tensor, Y: torch.Tensor, debiased: bool) -> float:
    """<K, L> for linear kernels of centred X, Y (unbiased-HSIC numerator when debiased)."""
    xty = float((Y.T @ X).double().pow(2).sum())
    if not debiased:
        return xty
    n = X.shape[0]
    sx, sy = X.double().pow(2).sum(1), Y.double().pow(2).sum(1)  # diagonals of the Grams
    return xty - n / (n - 2) * float(sx @ sy) + float(sx.sum() * sy.sum()) / ((n - 1) * (n - 2))


def linear_cka(X, Y, *, debiased: bool = False) -> float:
    """Linear CKA between X [n, d1] and Y [n, d2] (rows aligned)."""
    Xc, Yc = _centred(X), _centred(Y)
    if Xc.shape[0] != Yc.shape[0]:
        raise ValueError(f"X has {Xc.shape[0]} rows but Y has {Yc.shape[0]}")
    if debiased and Xc.shape[0] < 4:
        raise ValueError("debiased CKA needs at least 4 rows")
    xy = _hsic_terms(Xc, Yc, debiased)
    xx, yy = _hsic_terms(Xc, Xc, debiased), _hsic_terms(Yc, Yc, debiased)
    denom = np.sqrt(max(xx, 0.0) * max(yy, 0.0))
    if denom == 0:
        raise ValueError("CKA is undefined for a constant representation")
    return float(xy / denom)


@dataclass
class CKAResult:
    rows: list[str]
    cols: list[str]
    matrix: np.ndarray  # [len(rows), len(cols)]
    name: str = "cka"

    def to_metrics(self) -> dict[str, float]:
        """``probe/{name}/{row}~{col}`` for every pair."""
        return {
            metric_key("probe", self.name, pair(r, c)): float(self.matrix[i, j])
            for i, r in enumerate(self.rows)
            for j, c in enumerate(self.cols)
        }


def cka_matrix(
    store,
    hook_points=None,
    *,
    other=None,
    other_hook_points=None,
    debiased: bool = False,
    rows=None,
    name: str = "cka",
) -> CKAResult:
    """CKA between every pair of hook points of ``store`` (or against those of ``other``,
    e.g. a second model's store over the same inputs).  rows: optional row subsample,
    applied to both sides."""
    # centred in float64, multiplied in float32: d x d products dominate the cost
    a = {h: _centred(X).float() for h, X in read_hooks(store, hook_points, rows).items()}
    b = (
        a
        if other is None
        else {h: _centred(X).float() for h, X in read_hooks(other, other_hook_points, rows).items()}
    )
    n_a, n_b = next(iter(a.values())).shape[0], next(iter(b.values())).shape[0]
    if n_a != n_b:
        raise ValueError(f"the two sides have {n_a} and {n_b} rows; CKA needs aligned rows")
    self_a = {h: _hsic_terms(X, X, debiased) for h, X in a.items()}
    self_b = self_a if other is None else {h: _hsic_terms(X, X, debiased) for h, X in b.items()}
    M = np.zeros((len(a), len(b)))
    for i, (ha, Xa) in enumerate(a.items()):
        for j, (hb, Xb) in enumerate(b.items()):
            if other is None and j < i:
                M[i, j] = M[j, i]
                continue
            den = np.sqrt(max(self_a[ha], 0.0) * max(self_b[hb], 0.0))
            M[i, j] = _hsic_terms(Xa, Xb, debiased) / den if den > 0 else np.nan
    return CKAResult(list(a), list(b), M, name)
