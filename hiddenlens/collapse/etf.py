"""Simplex equiangular tight frames (ETF).

The simplex ETF is the limit geometry of neural collapse (Papyan, Han & Donoho 2020): C unit
vectors with pairwise cosine −1/(C−1). Fixed-ETF classifiers ("Inducing Neural Collapse in
Deep Long-tailed Learning", FedLoGe) use it directly.
"""

from __future__ import annotations

import numpy as np

from hiddenlens.collapse.metrics import etf_distance

__all__ = ["simplex_etf", "etf_distance"]


def simplex_etf(n_classes: int, d: int, *, seed: int | None = 0) -> np.ndarray:
    """A simplex ETF as rows: [C, d], unit norm, pairwise cosines exactly −1/(C−1).

    Built from the rows of √(C/(C−1))(I − 11ᵀ/C) written in an orthonormal basis of
    {x ∈ R^C : Σx = 0}, embedded in
    R^d by a random partial isometry (``seed=None`` keeps the first C−1 coordinates).
    Requires d ≥ C − 1.
    """
    c = int(n_classes)
    if c < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if d < c - 1:
        raise ValueError(f"a simplex ETF of {c} classes needs d >= {c - 1}, got d={d}")
    # rows of the centring projection (e_c − 1/C) are a simplex ETF up to scale; express
    # them in an orthonormal basis of the complement of the all-ones vector
    centring = np.eye(c) - np.ones((c, c)) / c
    basis = np.linalg.qr(centring)[0][:, : c - 1]  # [C, C-1]
    coords = centring @ basis * np.sqrt(c / (c - 1))  # [C, C-1], unit rows
    if seed is None:
        embed = np.eye(d)[: c - 1]
    else:
        g = np.random.default_rng(seed).standard_normal((d, c - 1))
        embed = np.linalg.qr(g)[0].T  # [C-1, d], orthonormal rows
    return coords @ embed
