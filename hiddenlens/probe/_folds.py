"""What the probe functions share besides reading activations (that is
:func:`hiddenlens.store.source.read_hooks`): the task a label array implies, and
cross-validation folds as row masks."""

from __future__ import annotations

import numpy as np


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
