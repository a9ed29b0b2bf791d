"""Input plumbing shared by the probe functions: activations from a store or a dict of
arrays, labels aligned with rows, and cross-validation folds as row masks."""

from __future__ import annotations

import numpy as np


def layer_arrays(source, hook_points=None, rows=None) -> dict[str, np.ndarray]:
    """hook -> float array [n, d].

    source: a dict ``hook -> array`` or an object with ``hook_points`` and
    ``rows(hook)`` (an ``ActivationStore``; its ``#grad`` hooks are skipped unless named);
    rows: optional row indices (a subsample).  Raises on ragged row counts and NaN / inf.
    """
    if isinstance(source, dict):
        available = list(source)
        get = source.__getitem__
    elif hasattr(source, "rows") and hasattr(source, "hook_points"):
        available = list(source.hook_points)
        get = source.rows
    else:
        raise TypeError(
            f"expected an ActivationStore or a dict hook -> array, got {type(source).__name__}"
        )
    if hook_points is None:
        hooks = [h for h in available if not h.endswith("#grad")]
    else:
        hooks = [hook_points] if isinstance(hook_points, str) else list(hook_points)
        missing = [h for h in hooks if h not in available]
        if missing:
            raise ValueError(f"unknown hook points {missing}; available: {available}")
    if not hooks:
        raise ValueError("no hook points to probe")
    out: dict[str, np.ndarray] = {}
    for h in hooks:
        X = np.asarray(get(h))
        if X.ndim != 2:
            raise ValueError(f"activations of {h!r} must be 2-D [n, d], got shape {X.shape}")
        if rows is not None:
            X = X[np.asarray(rows)]
        if not np.issubdtype(X.dtype, np.floating):
            X = X.astype(np.float32)
        if not np.isfinite(X).all():
            raise ValueError(f"activations of {h!r} contain NaN or inf")
        out[h] = X
    sizes = {h: X.shape[0] for h, X in out.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"hook points have different row counts: {sizes}")
    return out


def resolve_labels(source, labels, n: int, rows=None) -> np.ndarray:
    """Labels aligned with the (sub-sampled) rows; a string names a ``store.meta`` column."""
    if isinstance(labels, str):
        meta = getattr(source, "meta", None)
        if meta is None or labels not in meta:
            known = sorted(meta) if meta is not None else []
            raise ValueError(f"label column {labels!r} not found; store.meta has {known}")
        labels = np.asarray(meta[labels])
        if rows is not None:
            labels = labels[np.asarray(rows)]
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if len(labels) != n:
        raise ValueError(
            f"labels have {len(labels)} entries but there are {n} activation rows; "
            "pass labels aligned with the rows (or with rows=... already applied)"
        )
    return labels


def task_of(y: np.ndarray) -> str:
    """'classification' for integer / bool / string labels, 'regression' for real values."""
    from sklearn.utils.multiclass import type_of_target

    kind = type_of_target(y)
    if kind in ("binary", "multiclass"):
        return "classification"
    if kind == "continuous":
        return "regression"
    raise ValueError(f"cannot probe labels of type {kind!r}; pass 1-D class labels or real values")


def fold_assignment(y, n: int, cv, groups, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(test_fold [n] with -1 for rows in no test set, train masks [F, n] float32).

    cv: an int (stratified folds for class labels, grouped folds when ``groups`` is given)
    or any scikit-learn splitter.  Test sets must not overlap.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    if isinstance(cv, (int, np.integer)):
        if cv < 2:
            raise ValueError(f"cv must be >= 2 folds, got {cv}")
        if groups is not None:
            splitter = GroupKFold(n_splits=int(cv))
        elif y is not None:
            counts = np.bincount(y)
            if counts.min() < cv:
                raise ValueError(
                    f"the rarest class has {counts.min()} rows, fewer than cv={cv} folds"
                )
            splitter = StratifiedKFold(int(cv), shuffle=True, random_state=seed)
        else:
            splitter = KFold(int(cv), shuffle=True, random_state=seed)
    elif hasattr(cv, "split"):
        splitter = cv
    else:
        raise TypeError(f"cv must be an int or a scikit-learn splitter, got {cv!r}")
    test_fold = np.full(n, -1, np.int64)
    train = []
    dummy = np.zeros((n, 1))
    for f, (tr, te) in enumerate(splitter.split(dummy, y, groups)):
        if (test_fold[te] >= 0).any():
            raise ValueError("cross-validation test sets overlap; use a partitioning splitter")
        test_fold[te] = f
        m = np.zeros(n, np.float32)
        m[tr] = 1.0
        train.append(m)
    return test_fold, np.stack(train)
