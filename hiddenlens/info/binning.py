"""Binning (plug-in) mutual information, as used for the information plane.

Shwartz-Ziv & Tishby (2017, "Opening the Black Box of Deep Neural Networks via Information")
discretise each unit's activation into equal-width bins and compute plug-in entropies of the
binned patterns. For a deterministic network every input x gives one pattern, so
I(X;T) = H(T_binned) and it can never exceed log2 N (N = number of distinct inputs): the cap
is reported. The answer depends on bin width and range; Saxe et al. (2018) point out that
ReLU layers need a range adapted to their (unbounded) activations, so "fixed" (a given
range, or the data's range), "quantile" (adaptive, equal-mass) bins are offered and the
settings travel with the estimate.
"""

from __future__ import annotations

import numpy as np

from hiddenlens.info._validate import (
    as_2d,
    check_min_rows,
    check_not_constant,
    check_pair,
    codes_1d,
    entropy_from_codes,
    is_discrete,
    row_codes,
    to_bits,
)
from hiddenlens.info.result import MIEstimate

STRATEGIES = ("fixed", "quantile")


def bin_activations(
    t: np.ndarray,
    bins: int = 30,
    *,
    strategy: str = "fixed",
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Discretise ``t`` [n, d] into integer bin indices [n, d].

    strategy "fixed": ``bins`` equal-width bins over ``value_range`` (default: the data's
    min..max over all units; values outside the range are clipped into the edge bins);
    "quantile": per-unit equal-mass bins (adaptive; ties share a bin).
    """
    if not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    t = np.asarray(t, dtype=np.float64)
    if strategy == "fixed":
        lo, hi = (float(t.min()), float(t.max())) if value_range is None else value_range
        if not hi > lo:
            raise ValueError(f"value_range must have high > low, got ({lo}, {hi})")
        idx = np.floor((t - lo) * (bins / (hi - lo))).astype(np.int64)
        return np.clip(idx, 0, bins - 1)
    # quantile: interior edges per unit, then searchsorted column by column
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.quantile(t, qs, axis=0)  # [bins-1, d]
    out = np.empty(t.shape, dtype=np.int64)
    for j in range(t.shape[1]):
        out[:, j] = np.searchsorted(edges[:, j], t[:, j], side="right")
    return out


def _codes(a, name, bins, strategy, value_range):
    """Integer code per row: discrete input as-is, continuous input binned."""
    if a is None:
        return None, {}
    arr = as_2d(a, name)
    if value_range is None or is_discrete(arr):
        check_not_constant(arr, name)
    if is_discrete(arr):
        return codes_1d(arr, name), {f"{name}_binned": False}
    binned = bin_activations(arr, bins, strategy=strategy, value_range=value_range)
    return row_codes(binned), {f"{name}_binned": True}


def binning_mi(
    x,
    y=None,
    *,
    bins: int = 30,
    strategy: str = "fixed",
    value_range: tuple[float, float] | None = None,
) -> MIEstimate:
    """Plug-in I(X;Y) after binning the continuous variables.

    Args:
        x: [n] or [n, d]. Integer/bool arrays are category codes (one code per distinct row);
            float arrays are binned per unit.
        y: same conventions, or None meaning "each row is its own input" (the identity of a
            deterministic network's input), which gives I(X;T) = H(binned x).
        bins, strategy, value_range: see :func:`bin_activations` (applied to float inputs).

    Returns an :class:`MIEstimate` in bits with cap log2 N and the entropies in extras.
    """
    xa = as_2d(x, "x")
    n = xa.shape[0]
    check_min_rows(n, 2, "binning")
    if y is not None:
        check_pair(xa, as_2d(y, "y"))
    if strategy == "quantile" and n < bins:
        raise ValueError(f"quantile binning with bins={bins} needs at least {bins} rows, got {n}")
    cx, px = _codes(xa, "x", bins, strategy, value_range)
    cy, py = _codes(y, "y", bins, strategy, value_range)
    hx = entropy_from_codes(cx)
    if cy is None:  # deterministic network: I(X;T) = H(T)
        hy = hxy = float(np.log(n))  # the row identity determines the joint
    else:
        hy = entropy_from_codes(cy)
        joint = cx * (int(cy.max()) + 1) + cy
        hxy = entropy_from_codes(joint)
    mi = max(hx + hy - hxy, 0.0)  # plug-in MI is >= 0; clip rounding error only
    params = {"bins": int(bins), "strategy": strategy, **px, **py}
    if value_range is not None:
        params["range_low"], params["range_high"] = map(float, value_range)
    return MIEstimate(
        bits=to_bits(mi),
        estimator="binning",
        params=params,
        n=n,
        cap=to_bits(np.log(n)),
        extras={"h_x": to_bits(hx), "h_y": to_bits(hy), "h_xy": to_bits(hxy)},
    )


def plane_binning(
    t: np.ndarray,
    y: np.ndarray,
    *,
    bins: int = 30,
    strategy: str = "fixed",
    value_range: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """(I(X;T), I(T;Y)) in bits for one layer of a deterministic network, by binning.

    ``t`` [n, d] activations for n distinct inputs, ``y`` [n] integer labels. One binning
    pass serves both quantities (I(X;T) = H(T), I(T;Y) = H(T) + H(Y) - H(T,Y)).
    """
    binned = bin_activations(np.asarray(t), bins, strategy=strategy, value_range=value_range)
    ct = row_codes(binned)
    cy = codes_1d(np.asarray(y))
    ht, hy = entropy_from_codes(ct), entropy_from_codes(cy)
    hty = entropy_from_codes(ct * (int(cy.max()) + 1) + cy)
    return to_bits(ht), to_bits(max(ht + hy - hty, 0.0))
