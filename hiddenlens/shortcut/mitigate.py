"""Mitigations to compare against: group reweighting and Deep Feature Reweighting (DFR).

DFR: Kirichenko, Izmailov & Wilson, "Last Layer Re-Training is Sufficient for Robustness to
Spurious Correlations" (ICLR 2023): keep the feature extractor, retrain only the last
(logistic) layer on group-balanced data, averaging the weights over several balanced
subsamples. Group reweighting weights every example by the inverse frequency of its group
(the importance-weighted ERM baseline of Sagawa et al., "Distributionally Robust Neural
Networks", ICLR 2020), so every group carries the same total weight.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from hiddenlens.shortcut.groups import check_groups


def group_weights(groups) -> np.ndarray:
    """Per-example weights [n] = n / (n_groups * n_g): each group's weights sum to n / n_groups."""
    g = check_groups(groups, len(np.asarray(groups)))
    if len(g) == 0:
        raise ValueError("groups is empty")
    _, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    return len(g) / (len(counts) * counts[inv].astype(np.float64))


class DFR(ClassifierMixin, BaseEstimator):
    """Last-layer retraining on group-balanced subsamples (averaged logistic regressions).

    Parameters: ``C`` inverse L2/L1 strength, ``penalty`` "l2" or "l1", ``n_repeats``
    balanced subsamples whose weights are averaged, ``seed``.
    Fitted: ``coef_`` [n_classes or 1, d], ``intercept_``, ``classes_``, ``mean_``, ``scale_``
    (standardisation of the features, fitted on all rows).
    """

    def __init__(self, C: float = 1.0, penalty: str = "l2", n_repeats: int = 10, seed: int = 0):
        self.C = C
        self.penalty = penalty
        self.n_repeats = n_repeats
        self.seed = seed

    def _check_params(self) -> None:
        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ValueError(f"C={self.C!r}: must be > 0")
        if self.penalty not in ("l1", "l2"):
            raise ValueError(f"penalty={self.penalty!r}: accepted 'l1', 'l2'")
        if isinstance(self.n_repeats, bool) or not isinstance(self.n_repeats, int):
            raise ValueError(f"n_repeats={self.n_repeats!r}: must be an int >= 1")
        if self.n_repeats < 1:
            raise ValueError(f"n_repeats={self.n_repeats!r}: must be an int >= 1")

    def fit(self, features, y, groups) -> DFR:
        """features [n, d] (last-layer inputs, ideally held out from the backbone's training
        set), y [n] labels, groups [n] group ids."""
        from sklearn.linear_model import LogisticRegression

        self._check_params()
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features have shape {x.shape}; expected [n, d]")
        y = np.asarray(y)
        if y.shape != (len(x),):
            raise ValueError(f"y has shape {y.shape}; expected ({len(x)},)")
        g = check_groups(groups, len(x))
        self.mean_, self.scale_ = x.mean(axis=0), x.std(axis=0) + 1e-8
        z = (x - self.mean_) / self.scale_
        ids, counts = np.unique(g, return_counts=True)
        m = counts.min()
        rng = np.random.default_rng(self.seed)
        coefs, intercepts = [], []
        for _ in range(self.n_repeats):
            idx = np.concatenate(
                [rng.choice(np.flatnonzero(g == k), m, replace=False) for k in ids]
            )
            clf = LogisticRegression(
                C=self.C,
                l1_ratio=1.0 if self.penalty == "l1" else 0.0,
                solver="liblinear" if self.penalty == "l1" else "lbfgs",
                max_iter=1000,
            ).fit(z[idx], y[idx])
            if len(clf.classes_) != len(np.unique(y)):
                raise ValueError("a balanced subsample lost a class; every class needs rows")
            coefs.append(clf.coef_)
            intercepts.append(clf.intercept_)
        self.classes_ = clf.classes_
        self.coef_ = np.mean(coefs, axis=0)
        self.intercept_ = np.mean(intercepts, axis=0)
        return self

    def decision_function(self, features) -> np.ndarray:
        check_is_fitted(self, "coef_")
        z = (np.asarray(features, dtype=np.float64) - self.mean_) / self.scale_
        s = z @ self.coef_.T + self.intercept_
        return s[:, 0] if s.shape[1] == 1 else s

    def predict(self, features) -> np.ndarray:
        s = self.decision_function(features)
        idx = (s > 0).astype(int) if s.ndim == 1 else s.argmax(axis=1)
        return self.classes_[idx]
