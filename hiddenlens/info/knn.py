"""k-nearest-neighbour mutual information: KSG and its discrete-label variant.

Kraskov, Stögbauer & Grassberger (2004, "Estimating mutual information"), estimator 1:
with ε_i the max-norm distance from sample i to its k-th neighbour in the joint space and
n_x(i), n_y(i) the numbers of samples strictly closer than ε_i in each marginal,

    I(X;Y) = ψ(k) + ψ(N) - < ψ(n_x + 1) + ψ(n_y + 1) >.

For a discrete Y (labels) the variant of Ross (2014, "Mutual Information between Discrete
and Continuous Data Sets") is used: ε_i from the k-th neighbour among same-label samples,
m_i the number of all samples within ε_i,

    I(X;Y) = ψ(N) - < ψ(N_{y_i}) > + ψ(k) - < ψ(m_i) >.

Neither is guaranteed non-negative (small negative values mean "about zero"). Ties break
both, so a tiny jitter (relative 1e-10, seeded) is added to continuous data, as
scikit-learn's ``mutual_info_regression`` does.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from hiddenlens.info._validate import (
    as_2d,
    check_not_constant,
    check_pair,
    codes_1d,
    is_discrete,
    to_bits,
)
from hiddenlens.info.result import MIEstimate


def _prep(a: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    a = a.astype(np.float64)
    scale = a.std(axis=0, keepdims=True)
    scale[scale == 0] = 1.0
    a = a / scale  # per-dimension unit spread, so the max-norm weighs dimensions evenly
    if jitter > 0:
        a = a + jitter * rng.standard_normal(a.shape)
    return a


def _count_within(points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Number of other points strictly closer than radii[i] (max-norm) to point i."""
    from scipy.spatial import cKDTree

    tree = cKDTree(points)
    # strictly less than ε: shrink the radius by one ulp
    r = np.nextafter(radii, 0)
    return tree.query_ball_point(points, r, p=np.inf, return_length=True) - 1


def _ksg_continuous(x: np.ndarray, y: np.ndarray, k: int) -> float:
    from scipy.spatial import cKDTree

    n = x.shape[0]
    xy = np.hstack([x, y])
    dist, _ = cKDTree(xy).query(xy, k=k + 1, p=np.inf)
    eps = dist[:, -1]
    nx = _count_within(x, eps)
    ny = _count_within(y, eps)
    return float(digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1)))


def _ksg_discrete(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    from scipy.spatial import cKDTree

    n = x.shape[0]
    eps = np.empty(n)
    n_y = np.empty(n)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        dist, _ = cKDTree(x[idx]).query(x[idx], k=k + 1, p=np.inf)
        eps[idx] = dist[:, -1]
        n_y[idx] = idx.size
    m = _count_within(x, eps) + 1  # Ross's m_i counts the point itself
    return float(digamma(n) - np.mean(digamma(n_y)) + digamma(k) - np.mean(digamma(m)))


def ksg_mi(x, y, *, k: int = 3, jitter: float = 1e-10, seed: int = 0) -> MIEstimate:
    """KSG estimate of I(X;Y) in bits.

    Args:
        x: [n, d_x] continuous.
        y: [n, d_y] continuous, or [n] integer labels (Ross's discrete variant is used).
        k: neighbours (3–10 typical; larger k: lower variance, more bias).
        jitter: relative noise added to continuous data to break ties.
        seed: seed of the jitter.
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    xa, ya = as_2d(x, "x"), as_2d(y, "y")
    check_pair(xa, ya)
    n = xa.shape[0]
    check_not_constant(xa, "x")
    check_not_constant(ya, "y")
    rng = np.random.default_rng(seed)
    xs = _prep(xa, rng, jitter)
    if is_discrete(ya):
        labels = codes_1d(ya)
        smallest = int(np.bincount(labels).min())
        if smallest <= k:
            raise ValueError(
                f"ksg with discrete y needs more than k={k} samples per label; the smallest "
                f"label has {smallest} — lower k or merge rare labels"
            )
        mi = _ksg_discrete(xs, labels, k)
        variant = "ross"
    else:
        if n <= k:
            raise ValueError(f"ksg with k={k} needs more than {k} rows, got {n}")
        mi = _ksg_continuous(xs, _prep(ya, rng, jitter), k)
        variant = "ksg1"
    return MIEstimate(
        bits=to_bits(mi),
        estimator="ksg",
        params={"k": int(k), "variant": variant, "jitter": float(jitter)},
        n=n,
    )
