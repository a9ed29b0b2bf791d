"""scikit-learn compatible probes: a torch-backed linear probe and a nearest-class-mean probe.

``LinearProbe`` is L2 (optionally + L1) regularised multinomial logistic regression, and
``LinearProbeRegressor`` its ridge / elastic-net counterpart, both solved full-batch (see
``_solver``).  They work with ``clone``, ``cross_val_score`` and pipelines.  The objective
is ``mean_i loss_i + alpha / 2 ||W||^2 + l1 ||W||_1`` on standardised features, so
``alpha = 1 / (C * n)`` matches scikit-learn's ``LogisticRegression(C=C)`` on standardised
data.  By default ``LinearProbe`` chooses alpha by 3-fold inner cross-validation over a
small grid (as ``LogisticRegressionCV`` does; ``_alpha``), all inner folds in one batched
fit per candidate along a warm-started path, and keeps it in ``alpha_``; ``alpha=`` fixes it.  ``NearestMeanProbe`` assigns the class whose training mean is closest (the
continual-learning baseline of Rebuffi et al. 2017, and the NC4 comparison classifier of
Papyan et al. 2020).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from hiddenlens.probe._alpha import N_INNER, c_grid, fit_cv
from hiddenlens.probe._solver import fit_batched


def check_labels(
    y: np.ndarray, n_rows: int, *, min_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Validate classification labels; return (classes, encoded int64 labels)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if len(y) != n_rows:
        raise ValueError(f"labels have {len(y)} entries but the features have {n_rows} rows")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"labels look continuous (row {i} is {y[i]!r}, not a whole number): a "
                "classification probe needs class labels; use LinearProbeRegressor for a "
                "continuous target (sweep picks regression for real-valued labels itself)"
            )
    classes, enc = np.unique(y, return_inverse=True)
    if len(classes) < min_classes:
        raise ValueError(
            f"a probe needs at least {min_classes} classes, got {len(classes)} ({classes[:5]!r})"
        )
    if n_rows < len(classes):
        raise ValueError(f"{n_rows} rows cannot train a probe on {len(classes)} classes")
    return classes, enc.astype(np.int64)


def _check_params(alpha: float | None, l1: float, max_iter: int) -> None:
    if alpha is not None and not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    if not l1 >= 0:
        raise ValueError(f"l1 must be >= 0, got {l1!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter!r}")


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Logistic-regression probe, torch-backed, L2 (+ optional L1) regularised.

    Parameters: alpha (L2 strength, mean-loss scale; None: chosen by ``cv``-fold inner
    cross-validation over ``alphas``, by default scikit-learn's C in 0.01 ... 100 (``C_GRID``),
    by held-out accuracy),
    l1 (L1 strength), max_iter, tol (gradient tolerance), device ("cpu" or "cuda").
    Learned: ``classes_``, ``coef_`` [K, d] (K = 1 for binary), ``intercept_`` [K],
    ``alpha_`` (the L2 strength used), ``n_iter_``.
    """

    def __init__(
        self, alpha=None, l1=0.0, max_iter=500, tol=1e-4, device="cpu", alphas=None, cv=N_INNER
    ):
        self.alpha = alpha
        self.l1 = l1
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.alphas = alphas
        self.cv = cv

    def fit(self, X, y, sample_weight=None):
        _check_params(self.alpha, self.l1, self.max_iter)
        X, y = check_X_y(X, y, dtype=np.float32)
        self.classes_, enc = check_labels(y, X.shape[0])
        self.n_features_in_ = X.shape[1]
        K = 1 if len(self.classes_) == 2 else len(self.classes_)
        w = np.ones(len(y), np.float32) if sample_weight is None else np.asarray(sample_weight)
        Xt = torch.from_numpy(X)[None].to(self.device)
        yt = torch.from_numpy(enc).to(self.device)
        kw = dict(
            n_outputs=K,
            loss="logistic",
            l1=float(self.l1),
            max_iter=int(self.max_iter),
            tol=float(self.tol),
        )
        fit, self.alpha_ = self._fit(Xt, yt, w.astype(np.float32), kw)
        self.coef_ = fit.W[0, 0].cpu().numpy()
        self.intercept_ = fit.b[0, 0].cpu().numpy()
        self.n_iter_ = fit.n_iter
        return self

    def _fit(self, X, y, w, kw):
        """(the fit, its alpha): the given alpha, or the best of the grid by inner CV."""
        if self.alpha is None and (not isinstance(self.cv, (int, np.integer)) or self.cv < 2):
            raise ValueError(f"cv (inner folds choosing alpha) must be an int >= 2, got {self.cv!r}")
        n = float(w.sum())
        Cs = c_grid([self.alpha] if self.alpha is not None else self.alphas, n)
        if len(Cs) == 1:
            alpha = float(self.alpha) if self.alpha is not None else 1.0 / (Cs[0] * n)
            wt = torch.as_tensor(w, device=self.device)[None]
            return fit_batched(X, y, wt, torch.tensor([alpha]), **kw), alpha
        fit, best = fit_cv(X, y, w[None], Cs, n_inner=int(self.cv), **kw)
        return fit, float(1.0 / (Cs[best[0, 0]] * n))

    def decision_function(self, X) -> np.ndarray:
        """Logits [n] (binary) or [n, K]."""
        check_is_fitted(self, "coef_")
        X = check_array(X, dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, the probe was fitted on {self.n_features_in_}"
            )
        Z = X @ self.coef_.T + self.intercept_
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict_proba(self, X) -> np.ndarray:
        Z = self.decision_function(X)
        if Z.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-Z))
            return np.stack([1 - p, p], axis=1)
        Z = Z - Z.max(1, keepdims=True)
        e = np.exp(Z)
        return e / e.sum(1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        Z = self.decision_function(X)
        idx = (Z > 0).astype(int) if Z.ndim == 1 else Z.argmax(1)
        return self.classes_[idx]


class LinearProbeRegressor(RegressorMixin, BaseEstimator):
    """Ridge (alpha) / elastic-net (alpha + l1) regression probe for a scalar target."""

    def __init__(self, alpha=1e-4, l1=0.0, max_iter=500, tol=1e-6, device="cpu"):
        self.alpha = alpha
        self.l1 = l1
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def fit(self, X, y):
        _check_params(self.alpha, self.l1, self.max_iter)
        X, y = check_X_y(X, y, dtype=np.float32, y_numeric=True)
        self.n_features_in_ = X.shape[1]
        # ridge is equivariant to the target's scale, so fit a unit-scale target
        self.y_scale_ = float(np.std(y)) or 1.0
        t = torch.from_numpy((y / self.y_scale_).astype(np.float32))[:, None]
        fit = fit_batched(
            torch.from_numpy(X)[None].to(self.device),
            t.to(self.device),
            torch.ones(1, len(y), device=self.device),
            torch.tensor([float(self.alpha)]),
            n_outputs=1,
            loss="mse",
            l1=float(self.l1) / self.y_scale_,
            max_iter=int(self.max_iter),
            tol=float(self.tol),
        )
        self.coef_ = fit.W[0, 0, 0].cpu().numpy() * self.y_scale_
        self.intercept_ = float(fit.b[0, 0, 0]) * self.y_scale_
        self.n_iter_ = fit.n_iter
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = check_array(X, dtype=np.float32)
        return X @ self.coef_ + self.intercept_


class NearestMeanProbe(ClassifierMixin, BaseEstimator):
    """Predict the class with the nearest training mean (``metric`` "euclidean" or "cosine")."""

    def __init__(self, metric="euclidean"):
        self.metric = metric

    def fit(self, X, y):
        if self.metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {self.metric!r}")
        X, y = check_X_y(X, y, dtype=np.float64)
        self.classes_, enc = check_labels(y, X.shape[0])
        self.n_features_in_ = X.shape[1]
        onehot = np.eye(len(self.classes_))[enc]
        self.means_ = onehot.T @ X / onehot.sum(0)[:, None]
        return self

    def decision_function(self, X) -> np.ndarray:
        """Negative distance (or cosine similarity) to every class mean: [n, K]."""
        check_is_fitted(self, "means_")
        X = check_array(X, dtype=np.float64)
        if self.metric == "cosine":
            Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
            Mn = self.means_ / np.maximum(np.linalg.norm(self.means_, axis=1, keepdims=True), 1e-12)
            return Xn @ Mn.T
        d2 = (X * X).sum(1)[:, None] - 2 * X @ self.means_.T + (self.means_**2).sum(1)[None]
        return -d2

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)  # raises NotFittedError before fit
        return self.classes_[scores.argmax(1)]
