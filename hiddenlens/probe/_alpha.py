"""The L2 strength of a linear probe chosen by inner cross-validation, batched.

As scikit-learn's ``LogisticRegressionCV`` does, every candidate ``alpha`` of a small grid
is scored by held-out accuracy (cross-entropy breaking ties) on inner folds of the training rows, and the best one
is kept.  Instead of ``n_alphas x n_inner`` separate fits, each (outer problem, inner fold,
alpha) triple is one problem of a single ``fit_batched`` call (``_solver``): the inner
training rows are a row-weight vector and the alpha a per-problem scalar, so one pass over
``X`` per L-BFGS step serves the whole grid for every layer at once.
"""

from __future__ import annotations

import numpy as np
import torch

from hiddenlens.probe._solver import fit_batched, nll

# the default grid as scikit-learn's C (alpha = 1 / (C n_train) in the mean-loss scale on
# standardised features): C = 1, scikit-learn's default, and two decades each way
C_GRID = (100.0, 10.0, 1.0, 0.1, 0.01)


def alpha_grid(alphas, n_train: float) -> np.ndarray:
    """``alphas`` checked, or the default ``1 / (C_GRID * n_train)``."""
    if alphas is None:
        return 1.0 / (np.asarray(C_GRID) * float(n_train))
    a = np.asarray(alphas, np.float64).reshape(-1)
    if a.size < 1 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"alphas must be a non-empty list of finite values >= 0, got {alphas!r}")
    return a


def inner_weights(train_w: np.ndarray, y, groups, n_inner: int, seed: int) -> np.ndarray:
    """Row weights [P, J, n]: problem p's training rows minus its inner test fold j.

    Folds are stratified by ``y`` (class labels; None for regression) or grouped by
    ``groups``, like the outer folds, so the inner estimate does not leak either.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    P, n = train_w.shape
    out = np.zeros((P, n_inner, n), np.float32)
    for p in range(P):
        rows = np.flatnonzero(train_w[p] > 0)
        if groups is not None:
            split = GroupKFold(n_inner).split(rows, None, groups[rows])
        elif y is not None and np.bincount(y[rows]).min(initial=n_inner) >= n_inner:
            split = StratifiedKFold(n_inner, shuffle=True, random_state=seed).split(rows, y[rows])
        else:
            split = KFold(n_inner, shuffle=True, random_state=seed).split(rows)
        for j, (tr, _) in enumerate(split):
            out[p, j, rows[tr]] = train_w[p, rows[tr]]
    return out


def choose_alpha(X, target, train_w, alphas, *, groups=None, n_inner=3, seed=0, **fit_kw):
    """Index into ``alphas`` of the best L2 strength per layer and problem: [G, P] int.

    X [G, n, d]; target: class index [n] (long) or [n, 1] float (``loss="mse"``);
    train_w [P, n] numpy row weights; fit_kw: the rest of ``fit_batched``'s arguments.
    The score, summed over the inner folds, is the held-out accuracy with the
    cross-entropy breaking ties (logistic) or the squared error (mse); remaining ties go to
    the stronger penalty.
    """
    y = target.cpu().numpy() if target.dtype == torch.long else None
    w_in = inner_weights(train_w, y, groups, n_inner, seed)  # [P, J, n]
    P, J, n = w_in.shape
    A = len(alphas)
    w_all = np.repeat(w_in[:, :, None], A, axis=2).reshape(P * J * A, n)
    alpha_all = torch.tensor(np.tile(alphas, P * J), dtype=torch.float32)
    # ranking candidates needs less precision than the final fit
    kw = {**fit_kw, "tol": max(fit_kw.get("tol", 1e-4), 1e-3)}
    fit = fit_batched(X, target, torch.from_numpy(w_all).to(X.device), alpha_all, **kw)
    Z = fit.logits(X).cpu()  # [G, P*J*A, n, K]
    target = target.cpu()
    held = torch.from_numpy((train_w[:, None] > 0) & (w_in == 0))  # [P, J, n]
    held = held[:, :, None].expand(P, J, A, n).reshape(P * J * A, n)
    kind = fit_kw.get("loss", "logistic")
    weight = (held * torch.from_numpy(train_w).repeat_interleave(J * A, 0)).double()

    def total(per_row):  # [G, P*J*A, n] -> [G, P, A], summed over inner folds
        return (per_row * weight).sum(-1).view(-1, P, J, A).sum(2)

    loss = total(_row_loss(Z, target, kind))
    if kind == "logistic":  # accuracy first (as LogisticRegressionCV scores), then the loss
        errors = total(_errors(Z, target))
        tied = errors <= errors.min(-1, keepdim=True).values + 1e-6
        loss = torch.where(tied, loss, torch.full_like(loss, float("inf")))
    # ties go to the strongest penalty: scan the alphas from large to small
    order = np.argsort(-np.asarray(alphas), kind="stable")
    return order[loss[..., order.copy()].argmin(-1).numpy()]


def _errors(Z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred = (Z[..., 0] > 0).long() if Z.shape[-1] == 1 else Z.argmax(-1)
    return (pred != target).double()


def _row_loss(Z: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "mse":
        return ((Z[..., 0] - target[:, 0]) ** 2).double()
    return nll(Z, target)
