"""Pairwise-distance (KDE) bounds on mutual information, Kolchinsky & Tracey style.

Kolchinsky & Tracey (2017, "Estimating Mixture Entropy with Pairwise Distances") bound the
entropy of a mixture of Gaussians from pairwise distances between its components; Saxe et
al. (2018) use it for the information plane by treating the layer as T = h(X) + N(0, σ²I).
With N equally weighted components of variance σ² (one per input) and squared distances
D_ij = ||h_i - h_j||²:

    upper (KL):           I(X;T) <= -1/N Σ_i log 1/N Σ_j exp(-D_ij / (2σ²))
    lower (Bhattacharyya):I(X;T) >= -1/N Σ_i log 1/N Σ_j exp(-D_ij / (8σ²))

both in [0, log N]. For a discrete label Y, I(T;Y) = H(T) - Σ_c p_c H(T | Y=c), each entropy
from the same bound (as in Saxe et al.'s code); that difference is an estimate, not a bound.
The answer depends on σ² (``noise_var``), which is therefore a parameter of every estimate.

The N x N distance matrix is never held: rows are processed ``chunk_size`` at a time, and
one pass serves H(T), every H(T | Y=c) and both bounds.
"""

from __future__ import annotations

import numpy as np

from hiddenlens._threads import blas_threads
from hiddenlens.info._validate import (
    as_2d,
    check_min_rows,
    check_not_constant,
    check_pair,
    codes_1d,
    entropy_from_codes,
    is_discrete,
    to_bits,
)
from hiddenlens.info.result import MIEstimate

DEFAULT_CHUNK = None  # auto: 512 rows, fewer for large n so a block stays <= 2**22 floats
_BLOCK_FLOATS = 2**22


def _chunk(n: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return max(1, min(512, _BLOCK_FLOATS // max(n, 1)))
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    return int(chunk_size)


def _check_noise(noise_var: float) -> None:
    if not (isinstance(noise_var, (int, float)) and np.isfinite(noise_var) and noise_var > 0):
        raise ValueError(f"noise_var must be a positive finite float, got {noise_var!r}")


def kde_sums(
    t: np.ndarray,
    labels: np.ndarray | None,
    noise_var: float,
    *,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> dict[str, np.ndarray]:
    """Per-row log Σ_j exp(-D_ij / (2s)) for s = σ² and 4σ², over all j and over same-label j.

    t: [n, d] float64; labels: [n] int codes or None (each row its own component).
    Returns {"all_kl", "same_kl", "all_bd", "same_bd"} arrays [n] (nats). Peak extra memory is
    a few blocks of chunk_size * n floats (auto chunk: about 32 MiB each).
    """
    n = t.shape[0]
    chunk_size = _chunk(n, chunk_size)
    sq = np.einsum("ij,ij->i", t, t)
    onehot = None
    if labels is not None:
        onehot = np.zeros((n, int(labels.max()) + 1))
        onehot[np.arange(n), labels] = 1.0
    out = {k: np.empty(n) for k in ("all_kl", "same_kl", "all_bd", "same_bd")}
    with blas_threads(1):  # thin [chunk, d] x [d, n] products: threads only add overhead
        _fill_sums(t, sq, labels, onehot, noise_var, chunk_size, out)
    return out


def _fill_sums(t, sq, labels, onehot, noise_var, chunk_size, out) -> None:
    n = t.shape[0]
    for s in range(0, n, chunk_size):
        e = min(s + chunk_size, n)
        # squared distances of this block of rows to all rows: [e-s, n]
        d = sq[s:e, None] + sq[None, :] - 2.0 * (t[s:e] @ t.T)
        np.maximum(d, 0.0, out=d)
        d[np.arange(e - s), np.arange(s, e)] = 0.0  # exact self-distance
        for tag, var in (("kl", noise_var), ("bd", 4.0 * noise_var)):
            k = np.multiply(d, -0.5 / var)
            np.exp(k, out=k)  # the self term is exp(0) = 1, so sums are >= 1
            out[f"all_{tag}"][s:e] = np.log(k.sum(axis=1))
            if onehot is None:
                out[f"same_{tag}"][s:e] = 0.0
            else:
                per_class = k @ onehot  # [e-s, C]
                own = per_class[np.arange(e - s), labels[s:e]]
                out[f"same_{tag}"][s:e] = np.log(own)


def kde_mi(
    t,
    y=None,
    *,
    noise_var: float = 0.1,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> tuple[MIEstimate, MIEstimate]:
    """KDE upper and lower estimates of I(T; Y) with T = t + N(0, noise_var·I).

    Args:
        t: [n, d] continuous activations (noise is added conceptually, not sampled).
        y: [n] integer labels, or None meaning each row is a distinct input (gives I(X;T)).
            A label that is unique per row gives the same as None.
        noise_var: σ² of the added Gaussian noise, in the units of t squared.
        chunk_size: rows per block (None: automatic); memory is O(chunk_size * n).

    Returns (upper, lower) :class:`MIEstimate`, each in bits with cap log2 n.
    """
    _check_noise(noise_var)
    _chunk(1, chunk_size)  # validate early
    ta = as_2d(t, "t").astype(np.float64)
    n = ta.shape[0]
    check_min_rows(n, 2, "kde")
    check_not_constant(ta, "t")
    codes = None
    h_y = float(np.log(n))
    if y is not None:
        ya = as_2d(y, "y")
        check_pair(ta, ya, "t", "y")
        if not is_discrete(ya):
            raise TypeError(
                "kde needs discrete y (integer labels) or None; for two continuous "
                "variables use estimator='ksg' or a neural bound"
            )
        check_not_constant(ya, "y")
        codes = codes_1d(ya)
        if codes.max() + 1 == n:  # every row its own class: same as the input identity
            codes = None
        else:
            h_y = entropy_from_codes(codes)
    sums = kde_sums(ta, codes, noise_var, chunk_size=chunk_size)
    res = []
    for tag, name in (("kl", "kde_upper"), ("bd", "kde_lower")):
        mi = float(np.mean(sums[f"same_{tag}"] - sums[f"all_{tag}"])) + h_y
        res.append(
            MIEstimate(
                bits=to_bits(mi),
                estimator=name,
                params={
                    "noise_var": float(noise_var),
                    "target": "input" if codes is None else "labels",
                },
                n=n,
                cap=to_bits(np.log(n)),
            )
        )
    return res[0], res[1]


def plane_kde(
    t: np.ndarray, y: np.ndarray, *, noise_var: float = 0.1, chunk_size: int | None = DEFAULT_CHUNK
) -> dict[str, float]:
    """I(X;T) and I(T;Y), upper and lower, in bits, for one layer from a single pass."""
    ta = np.asarray(t, dtype=np.float64)
    if ta.ndim == 1:
        ta = ta[:, None]
    codes = codes_1d(np.asarray(y))
    n = ta.shape[0]
    h_y = entropy_from_codes(codes)
    s = kde_sums(ta, codes, noise_var, chunk_size=chunk_size)
    out = {}
    for tag, name in (("kl", "upper"), ("bd", "lower")):
        out[f"ixt_{name}"] = to_bits(np.log(n) - float(np.mean(s[f"all_{tag}"])))
        out[f"ity_{name}"] = to_bits(float(np.mean(s[f"same_{tag}"] - s[f"all_{tag}"])) + h_y)
    return out
