"""What the probe functions share besides reading activations (that is
:func:`hiddenlens.store.source.read_hooks`): the task a label array implies, and
cross-validation folds as row masks, and the groups they respect (documents by default)."""

from __future__ import annotations

import warnings

import numpy as np

from hiddenlens.store.source import row_labels


def resolve_groups(source, groups, labels: np.ndarray, rows=None):
    """(group id per row or None, how the folds were split: "sample_idx", a column name,
    "given" or "rows").  source: an ActivationSource (``as_source``); labels: the rows'
    labels (for the per-document check).

    groups: "auto" (the default of every probe: the source's ``sample_idx`` when rows
    repeat it, i.e. several token rows per document, so no document sits on both sides of a
    split), None (explicitly ungrouped rows), a ``meta`` column name or an array [n].
    Ungrouped folds over token rows whose label is constant within each document warn: the
    probe can score by recognising the document.
    """
    docs = None
    if "sample_idx" in source.meta:
        docs = row_labels(source, "sample_idx", rows)
        if len(np.unique(docs)) == len(docs):
            docs = None  # one row per example: nothing to group
    if isinstance(groups, str) and groups == "auto":
        return (docs, "sample_idx") if docs is not None else (None, "rows")
    if groups is None:
        if docs is not None and _constant_within(labels, docs):
            warnings.warn(
                "the label is constant within each sample_idx (a per-document label) but the "
                "folds split token rows (groups=None): tokens of one document sit in train "
                "and test, so the score can come from recognising the document; use "
                "groups='auto' (the default) or groups='sample_idx'",
                UserWarning,
                stacklevel=3,
            )
        return None, "rows"
    name = groups if isinstance(groups, str) else "given"
    return row_labels(source, groups, rows), name


def _constant_within(labels: np.ndarray, docs: np.ndarray) -> bool:
    _, d = np.unique(docs, return_inverse=True)
    _, y = np.unique(labels, return_inverse=True)
    first = np.full(d.max() + 1, -1)
    first[d[::-1]] = y[::-1]
    return bool(np.all(first[d] == y))


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
