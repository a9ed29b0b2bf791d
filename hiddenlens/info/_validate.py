"""Input checks shared by the mutual-information estimators.

Every estimator sees its data through these helpers, so a bad input (mismatched row counts,
NaN, a constant variable, too few rows for the chosen ``k`` or number of bins) fails the same
way everywhere: a ``ValueError``/``TypeError`` naming the bad value and what is accepted.
"""

from __future__ import annotations

import numpy as np

LN2 = float(np.log(2.0))


def to_bits(nats: float) -> float:
    """Convert nats to bits."""
    return float(nats) / LN2


def as_2d(a, name: str) -> np.ndarray:
    """Return ``a`` as a 2-D array ``[n, d]`` (a 1-D array becomes one column).

    Raises TypeError for non-numeric input and ValueError for NaN/inf or empty input.
    """
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    if hasattr(a, "detach"):  # torch tensor: no torch import needed here
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); need at least one row and column")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN/inf values; drop or impute them first")
    return arr


def is_discrete(a: np.ndarray) -> bool:
    """True for integer/bool arrays: those are used as category codes, never binned."""
    return np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)


def check_pair(x: np.ndarray, y: np.ndarray, xname: str = "x", yname: str = "y") -> None:
    """Both variables must have one row per sample and the same number of samples."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{xname} has {x.shape[0]} rows but {yname} has {y.shape[0]}; "
            "mutual information needs one paired row per sample"
        )


def check_not_constant(a: np.ndarray, name: str) -> None:
    """A constant variable carries no information; most estimators divide by its spread."""
    if a.shape[0] < 2 or np.all(a == a[:1]):
        raise ValueError(
            f"{name} is constant over all {a.shape[0]} rows; its mutual information with "
            "anything is 0 and the estimator is undefined — drop it or pass a varying variable"
        )


def check_min_rows(n: int, need: int, what: str) -> None:
    if n < need:
        raise ValueError(f"{what} needs at least {need} rows, got {n}")


def codes_1d(labels: np.ndarray, name: str = "y") -> np.ndarray:
    """Map each distinct row of a discrete array to an int code in ``[0, n_distinct)``."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 1:
        return np.unique(labels, return_inverse=True)[1].astype(np.int64)
    return row_codes(labels.astype(np.int64, copy=False))


def row_codes(cols: np.ndarray) -> np.ndarray:
    """Exact code per distinct row of a small-int matrix ``[n, d]`` -> ``[n]`` int64.

    Mixed-radix packing, re-compacted with ``np.unique`` whenever the next column could
    overflow int64; much faster than ``np.unique(axis=0)`` on void views (the usual
    reference implementation) and still exact (no hashing collisions).
    """
    n, d = cols.shape
    cols = cols - cols.min(axis=0, keepdims=True)
    radix = cols.max(axis=0).astype(np.int64) + 1
    code = np.zeros(n, dtype=np.int64)
    bound = 1  # exclusive upper bound of the current code values
    limit = np.iinfo(np.int64).max // 2
    for j in range(d):
        r = int(radix[j])
        if r == 1:
            continue
        if bound * r > limit:
            code = np.unique(code, return_inverse=True)[1].astype(np.int64)
            bound = int(code.max()) + 1
        code = code * r + cols[:, j]
        bound *= r
    return code


def entropy_from_codes(codes: np.ndarray) -> float:
    """Plug-in Shannon entropy (nats) of integer codes."""
    counts = np.unique(codes, return_counts=True)[1]
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))
