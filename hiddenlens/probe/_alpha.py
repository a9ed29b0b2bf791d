"""The L2 strength of linear probes chosen by inner cross-validation, batched and warm-started.

As scikit-learn's ``LogisticRegressionCV`` does, every candidate of a small grid is scored
by held-out accuracy (cross-entropy breaking ties) on inner folds of each training set, and
the best one is kept; the candidates are scikit-learn's C (``alpha = 1 / (C n_train)`` in the
mean-loss scale on standardised features, so an inner fold, with fewer rows, gets a
proportionally larger alpha, as ``LogisticRegressionCV`` has it).  Instead of
``n_alphas x (n_inner + 1)`` separate fits per layer and outer fold:

- every (layer, outer training set, inner fold) is one problem of a single ``fit_batched``
  call (``_solver``): inner training rows are a row-weight vector, so one pass over ``X``
  per L-BFGS step serves all layers, outer folds and inner folds;
- the outer training sets ride along in the same call, so the model at the chosen alpha
  needs no refit;
- the grid is walked as a regularisation path, strongest penalty first, each step
  warm-started from the previous one's solution and reusing its standardisation and
  preconditioner statistics.

A step whose change of alpha moves the gradient by less than ``tol`` stops at once (seen
at C >= 10 on near-separable MiniLM rows with the sweep's tol 1e-3): its solution is its
predecessor's up to round-off, so which of the two is kept does not change the scores,
but the alpha reported may then name the weaker penalty of the pair.
"""

from __future__ import annotations

import numpy as np
import torch

from hiddenlens.probe._solver import BatchedFit, fit_batched, nll

# scikit-learn's C: C = 1, scikit-learn's default, and two decades each way
C_GRID = (100.0, 10.0, 1.0, 0.1, 0.01)
N_INNER = 3  # inner folds


def c_grid(alphas, n_train: float) -> np.ndarray:
    """The candidates as C: the default ``C_GRID``, or ``alphas`` (L2 strengths for
    ``n_train`` rows, checked) as ``1 / (alpha n_train)``."""
    if alphas is None:
        return np.asarray(C_GRID, np.float64)
    a = np.asarray(alphas, np.float64).reshape(-1)
    if a.size < 1 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"alphas must be a non-empty list of finite values >= 0, got {alphas!r}")
    with np.errstate(divide="ignore"):
        return 1.0 / (a * float(n_train))


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
            if len(np.unique(groups[rows])) < n_inner:
                raise ValueError(
                    f"a training set holds {len(np.unique(groups[rows]))} groups, fewer than "
                    f"the {n_inner} inner folds that choose alpha; pass alpha= to fix it"
                )
            split = GroupKFold(n_inner).split(rows, None, groups[rows])
        elif y is not None and np.bincount(y[rows]).min(initial=n_inner) >= n_inner:
            split = StratifiedKFold(n_inner, shuffle=True, random_state=seed).split(rows, y[rows])
        else:
            split = KFold(n_inner, shuffle=True, random_state=seed).split(rows)
        for j, (tr, _) in enumerate(split):
            out[p, j, rows[tr]] = train_w[p, rows[tr]]
    return out


def fit_cv(X, target, train_w, Cs, *, groups=None, n_inner=N_INNER, seed=0, **fit_kw):
    """(fit of every outer problem at its chosen C [G, P], index into ``Cs`` [G, P]).

    X [G, n, d]; target: class index [n] (long) or [n, 1] float (``loss="mse"``);
    train_w [P, n] numpy row weights of the outer problems; Cs: the candidates as
    scikit-learn's C (``inf``: no penalty); a problem with training weight n_p gets
    ``alpha = 1 / (C n_p)``; fit_kw: the rest of ``fit_batched``'s arguments.  The score, summed over the inner folds, is the held-out
    accuracy with the cross-entropy breaking ties (logistic) or the squared error (mse);
    remaining ties go to the stronger penalty.
    """
    y = target.cpu().numpy() if target.dtype == torch.long else None
    w_in = inner_weights(train_w, y, groups, n_inner, seed)  # [P, J, n]
    P, J, n = w_in.shape
    w_all = np.concatenate([train_w[:, None], w_in], 1).reshape(P * (J + 1), n)
    Cs = np.asarray(Cs, np.float64)
    held = torch.from_numpy((train_w[:, None] > 0) & (w_in == 0))  # [P, J, n]
    weight = (held * torch.from_numpy(train_w)[:, None]).double()
    w_t = torch.from_numpy(w_all).to(X.device)
    kind = fit_kw.get("loss", "logistic")
    fit, fits, score = None, [None] * len(Cs), []
    n_iter, converged = 0, True
    # the path: strongest penalty (smallest C) first, each fit warm-starting the next
    order = np.argsort(Cs, kind="stable")
    for a in order:
        alpha_t = torch.tensor(1.0 / (Cs[a] * w_all.sum(1)), dtype=torch.float32)
        fit = fit_batched(X, target, w_t, alpha_t, init=fit, **fit_kw)
        n_iter, converged = n_iter + fit.n_iter, converged and fit.converged
        Z = fit.logits(X).cpu().unflatten(1, (P, J + 1))[:, :, 1:]  # [G, P, J, n, K]
        score.append(_inner_score(Z, target.cpu(), weight, kind))  # [G, P, 2]
        fits[a] = (fit.W.unflatten(1, (P, J + 1))[:, :, 0], fit.b.unflatten(1, (P, J + 1))[:, :, 0])
    best = order[_pick(torch.stack(score, 2)).numpy()]  # [G, P], into Cs
    W = torch.stack([f[0] for f in fits])  # [A, G, P, K, d]
    b = torch.stack([f[1] for f in fits])
    gi, pi = torch.meshgrid(torch.arange(W.shape[1]), torch.arange(P), indexing="ij")
    best_t = torch.from_numpy(best).to(W.device)
    gi, pi = gi.to(W.device), pi.to(W.device)
    chosen = BatchedFit(W[best_t, gi, pi], b[best_t, gi, pi], n_iter, converged)
    return chosen, best


def _inner_score(Z, target, weight, kind) -> torch.Tensor:
    """[G, P, 2]: (held-out errors, held-out loss) summed over the inner folds; for mse
    both are the squared error."""
    G, P, J, n, K = Z.shape
    per_row = _row_loss(Z.reshape(G, P * J, n, K), target, kind).view(G, P, J, n)
    loss = (per_row * weight).sum((-1, -2))
    if kind != "logistic":
        return torch.stack([loss, loss], -1)
    pred = (Z[..., 0] > 0).long() if Z.shape[-1] == 1 else Z.argmax(-1)
    errors = ((pred != target).double() * weight).sum((-1, -2))
    return torch.stack([errors, loss], -1)


def _pick(score: torch.Tensor) -> torch.Tensor:
    """score [G, P, A, 2] along the path (strongest penalty first) -> index [G, P]: the
    fewest errors, then the lowest loss, then the first (strongest penalty)."""
    errors, loss = score[..., 0], score[..., 1]
    tied = errors <= errors.min(-1, keepdim=True).values + 1e-6
    return torch.where(tied, loss, torch.full_like(loss, float("inf"))).argmin(-1)


def _row_loss(Z: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "mse":
        return ((Z[..., 0] - target[:, 0]) ** 2).double()
    return nll(Z, target)
