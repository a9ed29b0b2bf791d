"""One entry point for every mutual-information estimator, with an optional bootstrap CI.

Which estimator to trust depends on the question (see the info section of the research
digest and Saxe et al. 2018): binning and KDE need a free parameter (bin width, noise
variance) that shapes the answer; KSG is consistent for continuous data but biased in high
dimension; neural bounds are lower bounds (InfoNCE capped at log batch). So the estimator is
always named, its parameters returned, and its cap reported.
"""

from __future__ import annotations

import numpy as np

from hiddenlens.info._validate import as_2d
from hiddenlens.info.binning import binning_mi
from hiddenlens.info.kde import kde_mi
from hiddenlens.info.knn import ksg_mi
from hiddenlens.info.result import MIEstimate

ESTIMATORS = ("binning", "kde_upper", "kde_lower", "ksg", "infonce", "mine", "smile")


def _estimate_once(x, y, estimator: str, params: dict) -> MIEstimate:
    if estimator == "binning":
        return binning_mi(x, y, **params)
    if estimator in ("kde_upper", "kde_lower"):
        upper, lower = kde_mi(x, y, **params)
        main, other = (upper, lower) if estimator == "kde_upper" else (lower, upper)
        key = "kde_lower_bits" if estimator == "kde_upper" else "kde_upper_bits"
        return MIEstimate(
            main.bits, main.estimator, main.params, main.n, main.cap, None, {key: other.bits}
        )
    if estimator == "ksg":
        if y is None:
            raise ValueError("ksg needs both x and y")
        return ksg_mi(x, y, **params)
    from hiddenlens.info.neural import neural_mi

    if y is None:
        raise ValueError(f"{estimator} needs both x and y")
    return neural_mi(x, y, bound=estimator, **params)


NEIGHBOUR_ESTIMATORS = ("ksg", "kde_upper", "kde_lower")


def _resample_ci(x, y, estimator, params, bootstrap, confidence, seed, bits) -> tuple[float, float]:
    """The estimate's sampling interval from ``bootstrap`` resamples of the rows.

    k-NN and KDE estimators read a duplicated row as a neighbour at distance 0 (infinite
    density), so resampling *with* replacement inflates them far beyond the estimate. For
    them the rows are subsampled without replacement (Politis & Romano 1994) at half size,
    where the spread of half-sample estimates around their mean, times sqrt(m / (n - m)) = 1,
    is the full-sample estimate's spread (the finite-population correction of a mean);
    the interval is ``bits`` minus the deviations' quantiles, so it is centred on the
    estimate and does not pick up the half samples' larger bias. The other estimators keep
    the percentile bootstrap with replacement.
    """
    xa = as_2d(x, "x")
    ya = None if y is None else as_2d(y, "y")
    n = xa.shape[0]
    rng = np.random.default_rng(seed)
    subsample = estimator in NEIGHBOUR_ESTIMATORS
    m = n // 2
    vals = []
    for _ in range(bootstrap):
        idx = rng.choice(n, m, replace=False) if subsample else rng.integers(0, n, n)
        yb = None if ya is None else ya[idx]
        try:
            vals.append(_estimate_once(xa[idx], yb, estimator, params).bits)
        except ValueError:  # a degenerate resample (e.g. a class drawn too rarely): skip it
            continue
    if len(vals) < max(2, bootstrap // 2):
        raise ValueError(
            f"only {len(vals)} of {bootstrap} resamples were estimable; "
            "use more samples or fewer bins / a smaller k"
        )
    a = (1 - confidence) / 2
    if not subsample:
        lo, hi = np.quantile(vals, [a, 1 - a])
        return float(lo), float(hi)
    dev = (np.asarray(vals) - np.mean(vals)) * np.sqrt(m / (n - m))
    q_lo, q_hi = np.quantile(dev, [a, 1 - a])
    return float(bits - q_hi), float(bits - q_lo)


def _source_arrays(x, y):
    """x's rows as an array when x is an activation source; a string y names its meta column."""
    from hiddenlens.store.source import as_source, is_source, meta_column, read_hooks, single_hook

    if not (isinstance(x, (tuple, dict)) or is_source(x)):
        return x, y  # an array, tensor or list: used as is
    src = as_source(x)
    hook = single_hook(src)
    return read_hooks(src, hook)[hook], meta_column(src, y) if isinstance(y, str) else y


def mutual_information(
    x,
    y=None,
    *,
    estimator: str = "binning",
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    **params,
) -> MIEstimate:
    """Estimate I(X;Y) in bits.

    Args:
        x: [n] or [n, d] array (numpy or torch). For "kde_*", the continuous activations T.
            Or activations from a store: a ``(store, hook)`` pair or a one-hook source
            (anything :func:`hiddenlens.store.as_source` reads), all rows in memory; then
            ``y`` may also name one of its ``meta`` columns (e.g. labels).
        y: [n] or [n, d], or None. None means "each row is a distinct input of a
            deterministic network", so the result is I(X;T) (binning: H(T); KDE: the
            noise-smoothed I(X;T)). Integer arrays are treated as discrete labels.
        estimator: one of "binning", "kde_upper", "kde_lower", "ksg", "infonce", "mine",
            "smile".
        bootstrap: number of resamples for a confidence interval; 0 for none. Binning and
            the neural bounds use the percentile bootstrap (rows drawn with replacement);
            KSG and KDE, which duplicated rows break, use half-size subsamples drawn without
            replacement (``params["ci_method"]`` says which). The CI shows sampling
            variability, not the estimator's bias.
        confidence: CI level.
        seed: seed of the bootstrap resampling.
        **params: estimator settings — binning: bins, strategy ("fixed" | "quantile"),
            value_range; kde: noise_var, chunk_size; ksg: k, jitter, seed; neural: hidden,
            n_steps, batch_size, lr, clip, ema, eval_fraction, seed.

    Returns an :class:`MIEstimate` (bits, estimator, params, n, cap, ci, extras).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    x, y = _source_arrays(x, y)
    if not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ValueError(f"bootstrap must be a non-negative int, got {bootstrap!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    est = _estimate_once(x, y, estimator, params)
    if bootstrap == 0:
        return est
    lo, hi = _resample_ci(x, y, estimator, params, bootstrap, confidence, seed, est.bits)
    method = "subsample" if estimator in NEIGHBOUR_ESTIMATORS else "bootstrap"
    return MIEstimate(
        est.bits,
        est.estimator,
        {**est.params, "bootstrap": int(bootstrap), "ci_method": method, "confidence": confidence},
        est.n,
        est.cap,
        (lo, hi),
        est.extras,
    )
