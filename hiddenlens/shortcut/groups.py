"""Group-robustness metrics and layer-wise decodability of labels and spurious attributes.

- Per-group / worst-group accuracy, group gap, group-weighted average accuracy and
  spurious-attribute predictability as used by SpuCo (Joshi et al., "Towards Mitigating
  Spurious Correlations in the Wild: A Benchmark & a more Realistic Dataset", 2023).
- Equal-opportunity difference (Hardt, Price & Srebro, "Equality of Opportunity in
  Supervised Learning", 2016): spread of the true-positive rate across attribute values.
- Early-layer decodability as a simple-shortcut detector, after Tiwari & Shenoy,
  "Overcoming Simplicity Bias in Deep Networks using a Feature Sieve" (ICML 2023): a label
  that a linear probe already reads off the earliest layers is likely a simple feature.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hiddenlens._keys import metric_key


def check_groups(groups, n: int, name: str = "groups") -> np.ndarray:
    """Validate group labels: 1-D, length n, integer-valued, none missing (NaN / None / < 0)."""
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise ValueError(f"{name} has shape {g.shape}; expected ({n},), one label per row")
    if g.dtype == object:
        missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in g])
    elif np.issubdtype(g.dtype, np.floating):
        missing = ~np.isfinite(g)
    elif np.issubdtype(g.dtype, np.integer) or g.dtype == bool:
        missing = g.astype(np.int64) < 0
    else:
        raise TypeError(f"{name} must hold integer labels, got dtype {g.dtype}")
    if missing.any():
        rows = np.flatnonzero(missing)
        raise ValueError(
            f"{name}: labels missing (None / NaN / negative) for {len(rows)} of {n} rows, e.g. "
            f"rows {rows[:5].tolist()}; every row needs a non-negative integer label"
        )
    if g.dtype == object or np.issubdtype(g.dtype, np.floating):
        gf = g.astype(np.float64)
        if (gf < 0).any() or (gf != np.round(gf)).any():
            raise ValueError(f"{name} must be non-negative integers")
        g = gf
    return g.astype(np.int64)


def _labels(y, n: int, name: str) -> np.ndarray:
    a = np.asarray(y)
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}; expected ({n},)")
    return a


def group_metrics(y_true, y_pred, groups, *, weights: Mapping[int, float] | None = None) -> dict:
    """Accuracy per group and its summaries.

    y_true, y_pred, groups: [n]. ``weights`` maps group id -> weight for the
    group-weighted average (e.g. the training-set group frequencies); default: the group
    frequencies of this set, which makes it the plain accuracy.
    Keys (each ``shortcut/<metric>[/<group>]``): "group_acc/<g>", "worst_group_acc",
    "best_group_acc", "group_gap" (best - worst), "mean_group_acc" (unweighted mean over
    groups), "group_weighted_acc", "accuracy".
    """
    y_true = np.asarray(y_true)
    n = len(y_true)
    y_pred = _labels(y_pred, n, "y_pred")
    g = check_groups(groups, n)
    if n == 0:
        raise ValueError("group_metrics needs at least one row")
    correct = (y_true == y_pred).astype(np.float64)
    ids = np.unique(g)
    acc = {int(k): float(correct[g == k].mean()) for k in ids}
    out = {metric_key("shortcut", "group_acc", str(k)): v for k, v in acc.items()}
    out[metric_key("shortcut", "worst_group_acc")] = min(acc.values())
    out[metric_key("shortcut", "best_group_acc")] = max(acc.values())
    out[metric_key("shortcut", "group_gap")] = max(acc.values()) - min(acc.values())
    out[metric_key("shortcut", "mean_group_acc")] = float(np.mean(list(acc.values())))
    if weights is None:
        weights = {int(k): float((g == k).mean()) for k in ids}
    missing = [k for k in acc if k not in weights]
    if missing:
        raise ValueError(f"weights has no entry for groups {missing}")
    total = sum(float(weights[k]) for k in acc)
    if total <= 0:
        raise ValueError("group weights must sum to a positive number")
    weighted = sum(float(weights[k]) * acc[k] for k in acc) / total
    out[metric_key("shortcut", "group_weighted_acc")] = weighted
    out[metric_key("shortcut", "accuracy")] = float(correct.mean())
    return out


def equal_opportunity_difference(y_true, y_pred, attribute, *, positive=1) -> float:
    """max - min over attribute values of the true-positive rate P(y_pred = pos | y = pos, a).

    Zero when every attribute value gets the same recall on the positive class.
    """
    y_true = np.asarray(y_true)
    n = len(y_true)
    y_pred = _labels(y_pred, n, "y_pred")
    a = check_groups(attribute, n, "attribute")
    pos = y_true == positive
    rates = []
    for v in np.unique(a):
        sel = pos & (a == v)
        if sel.any():
            rates.append(float((y_pred[sel] == positive).mean()))
    if len(rates) < 2:
        raise ValueError(
            f"equal opportunity needs positive examples (y == {positive!r}) in at least two "
            "attribute values"
        )
    return max(rates) - min(rates)


def probe_accuracy(x, labels, *, test_frac: float = 0.3, max_rows: int = 4000, seed: int = 0):
    """Held-out accuracy and majority-class accuracy of a linear probe predicting ``labels``.

    Uses hiddenlens.probe.LinearProbe (else scikit-learn's LogisticRegression) on
    standardised inputs. x: [n, d]; labels: [n] ints.
    """
    x = np.asarray(x, dtype=np.float32)
    lab = check_groups(labels, len(x), "labels")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))[:max_rows]
    n_test = max(1, int(round(test_frac * len(idx))))
    te, tr = idx[:n_test], idx[n_test:]
    if len(np.unique(lab[tr])) < 2:
        raise ValueError("the probe's training rows hold a single label value; nothing to decode")
    chance = float(np.max(np.bincount(lab[te])) / len(te))
    return _fit_score(x[tr], lab[tr], x[te], lab[te], seed), chance


def _fit_score(xtr, ytr, xte, yte, seed: int) -> float:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    try:  # the probe analyzer's estimator (torch-backed, sklearn-style)
        from hiddenlens.probe import LinearProbe

        est = LinearProbe()
    except ImportError:  # the probe package is optional for this module
        from sklearn.linear_model import LogisticRegression

        est = LogisticRegression(max_iter=300, random_state=seed)
    clf = make_pipeline(StandardScaler(), est)
    return float(clf.fit(xtr, ytr).score(xte, yte))


def spurious_predictability(
    acts: Mapping[str, np.ndarray], attribute, *, max_rows: int = 4000, seed: int = 0
) -> dict[str, float]:
    """Held-out linear-probe accuracy of the spurious ``attribute`` from each layer.

    acts: layer name -> [n, d] activations. Keys "shortcut/spurious_predictability/<layer>"
    and "shortcut/spurious_chance" (majority-class rate).
    """
    out: dict[str, float] = {}
    chance = float("nan")
    for name, x in acts.items():
        acc, chance = probe_accuracy(x, attribute, max_rows=max_rows, seed=seed)
        out[metric_key("shortcut", "spurious_predictability", name)] = acc
    out[metric_key("shortcut", "spurious_chance")] = chance
    return out


def early_decodability(
    acts: Mapping[str, np.ndarray],
    labels,
    *,
    early_layers: int = 1,
    threshold: float = 0.9,
    max_rows: int = 4000,
    seed: int = 0,
) -> dict[str, float]:
    """Feature-Sieve style flag: is ``labels`` already decodable from the earliest layers?

    acts: ordered mapping layer -> [n, d], earliest first. Decodability of a layer is the
    probe's held-out accuracy rescaled so that chance (majority class) is 0 and perfect is 1.
    ``shortcut/sieve_early_ratio`` = best decodability among the first ``early_layers``
    layers divided by the best over all layers; ``shortcut/sieve_flag`` = 1.0 when that
    ratio >= ``threshold``. Keys also "shortcut/decodability/<layer>",
    "shortcut/probe_acc/<layer>", "shortcut/sieve_first_layer" (index of the first layer
    reaching ``threshold`` x best).
    """
    if not acts:
        raise ValueError("acts is empty; give at least one layer")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r}: accepted (0, 1]")
    if not 1 <= early_layers <= len(acts):
        raise ValueError(f"early_layers={early_layers!r}: accepted 1..{len(acts)}")
    out: dict[str, float] = {}
    dec = []
    for name, x in acts.items():
        acc, chance = probe_accuracy(x, labels, max_rows=max_rows, seed=seed)
        d = (acc - chance) / (1 - chance) if chance < 1 else 0.0
        dec.append(max(d, 0.0))
        out[metric_key("shortcut", "probe_acc", name)] = acc
        out[metric_key("shortcut", "decodability", name)] = dec[-1]
    best = max(dec)
    ratio = max(dec[:early_layers]) / best if best > 0 else 0.0
    out[metric_key("shortcut", "sieve_early_ratio")] = ratio
    out[metric_key("shortcut", "sieve_flag")] = float(best > 0 and ratio >= threshold)
    hits = [i for i, d in enumerate(dec) if best > 0 and d >= threshold * best]
    out[metric_key("shortcut", "sieve_first_layer")] = float(hits[0]) if hits else float("nan")
    return out
