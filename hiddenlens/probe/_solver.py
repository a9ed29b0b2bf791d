"""Many linear probes fitted in one full-batch optimisation.

A layer sweep with cross-validation fits ``G`` (layers) x ``P`` (folds, or MDL blocks)
independent linear models on the same rows.  Instead of looping, all weights live in one
tensor ``V [G, P*K, d]`` and every problem sees the same data matrix ``X [G, n, d]``: a
problem is selected by a per-row weight vector ``w[p]`` (1 for its training rows, 0 for the
rest).  The objective is the *sum* of the per-problem objectives

    f_gp(V, c) = sum_i w_pi loss(x_gi, y_i) / sum_i w_pi + alpha_p / 2 ||V_gp||^2 (+ l1 ||V_gp||_1)

which is separable, so its minimiser is every problem's own minimiser.  One pass over
``X`` per evaluation serves all ``P * K`` output columns (a matrix-matrix product instead of
``P`` matrix-vector products), and the gradient is written out by hand so that both
products use the fast memory layout (``X @ W.T`` and ``R.T @ X``; autograd's ``X.T @ R``
is ~5x slower on CPU).

Features are standardised per problem with the *training* rows' mean and standard
deviation (no leakage from held-out rows); the standardisation is folded into the weights
(``W = V / sd``, ``b = c - mu . W``) so ``X`` is never copied.  Smooth objectives are
minimised with L-BFGS (scipy's L-BFGS-B, the solver behind scikit-learn's ``lbfgs``)
after a change of variables ``V = u M`` with ``M = L^-1``, ``L L^T = C + delta I`` and ``C``
each layer's feature correlation matrix: the optimum is unchanged but the problem becomes
nearly isotropic, which cut the iteration count ~5x on correlated activations.  With an L1 term the solver is
FISTA (Beck & Teboulle 2009) with backtracking, which gives exact zeros.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from hiddenlens._threads import torch_threads

logger = logging.getLogger(__name__)

LOSSES = ("logistic", "mse")


@dataclass
class BatchedFit:
    """Weights in raw feature space: ``logits = X @ W[g, p].T + b[g, p]``."""

    W: torch.Tensor  # [G, P, K, d]
    b: torch.Tensor  # [G, P, K]
    n_iter: int
    converged: bool
    # the training rows' (mean [G, P, d], sd [G, P, d], correlation [G, d, d]): a warm start
    # of the same problems (``fit_batched(init=...)``) reuses them instead of recomputing
    stats: tuple | None = None

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        """X [G, m, d] -> logits [G, P, m, K]."""
        G, P, K, d = self.W.shape
        Z = torch.bmm(X.to(self.W.dtype), self.W.reshape(G, P * K, d).transpose(1, 2))
        return Z.view(G, -1, P, K).permute(0, 2, 1, 3) + self.b[:, :, None, :]


def nll(Z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood in nats [G, P, n] (float64) of class index y [n] under logits
    Z [G, P, n, K] (K = 1: one binary logit, as ``BatchedFit`` parametrises it)."""
    if Z.shape[-1] == 1:
        z = Z[..., 0].double()
        return torch.nn.functional.softplus(torch.where(y.bool(), -z, z))
    logp = torch.log_softmax(Z.double(), -1)
    return -logp.gather(-1, y.view(1, 1, -1, 1).expand(*Z.shape[:3], 1))[..., 0]


def _threads(num_threads: int | None):
    """``num_threads`` torch threads for the fit (None: 1 when the machine is oversubscribed,
    where the many small products of an L-BFGS run were ~8x slower with 2 threads)."""
    return torch_threads(num_threads, blas=False)


def _train_stats(X: torch.Tensor, w: torch.Tensor):
    """Per-problem weighted mean and std of every feature ([G, P, d] each) and each layer's
    correlation matrix over all rows ([G, d, d], for the preconditioner).

    Rows are centred on the layer mean first: transformer activations have outlier
    dimensions with large means where E[x^2] - E[x]^2 would lose all digits in float32.
    """
    wsum = w.sum(1, keepdim=True)  # [P, 1]
    mus, sds, corrs = [], [], []
    for g in range(X.shape[0]):
        shift = X[g].mean(0)
        Xc = X[g] - shift
        m1 = w @ Xc / wsum  # [P, d]
        var = (w @ (Xc * Xc) / wsum - m1 * m1).clamp_min(0.0)
        sd = var.sqrt()
        # constant features get sd 1 so their (irrelevant) weight stays finite
        sd = torch.where(sd > 1e-6 * (1.0 + shift.abs()), sd, torch.ones_like(sd))
        cov = (Xc.T @ Xc) / X.shape[1]
        s_all = cov.diagonal().clamp_min(1e-12).sqrt()
        corrs.append(cov / s_all[:, None] / s_all[None, :])
        mus.append(m1 + shift)
        sds.append(sd)
    return torch.stack(mus), torch.stack(sds), torch.stack(corrs)


def _preconditioner(corr: torch.Tensor, delta: float, n_rows: int):
    """(M, L) [G, d, d] each: M_g = L_g^-1 with L_g L_g^T = C_g + delta I, so V = u M turns
    the curvature of the standardised problem (roughly C_g) into the identity (u = V L).

    With fewer rows than ~2 d the correlation estimate is rank-deficient and the L2 term
    dominates the curvature anyway, so the identity is used (and the d^3 work skipped).
    """
    G, d, _ = corr.shape
    eye = torch.eye(d, dtype=corr.dtype)
    identity = eye.expand(G, d, d).contiguous()
    if n_rows < 2 * d:
        return identity, identity
    eye64 = eye.double()
    L, info = torch.linalg.cholesky_ex(corr.double() + delta * eye64)
    if bool((info != 0).any()):  # numerically singular: fall back to plain standardisation
        return identity, identity
    M = torch.linalg.solve_triangular(L, eye64.expand_as(L), upper=False)
    return M.to(corr.dtype), L.to(corr.dtype)


class _Objective:
    """Value and hand-written gradient of the batched objective (smooth part)."""

    def __init__(self, X, y, w, alpha, mu, sd, loss, K, bias_alpha=0.0):
        self.X, self.y, self.loss, self.K = X, y, loss, K
        self.bias_alpha = bias_alpha * alpha.view(1, -1, 1)
        G, n, d = X.shape
        P = w.shape[0]
        self.wn = (w / w.sum(1, keepdim=True)).T.contiguous()  # [n, P]
        self.alpha = alpha.view(1, P, 1, 1)
        self.mu = mu[:, :, None, :]  # [G, P, 1, d]
        self.sd = sd[:, :, None, :]
        self.shape = (G, P, K, d)
        if loss == "logistic" and K > 1:
            self.onehot = torch.nn.functional.one_hot(y, K).to(X.dtype)  # [n, K]

    def raw(self, V: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W = V / self.sd  # [G, P, K, d]
        return W, c - (self.mu * W).sum(-1)

    def __call__(self, V: torch.Tensor, c: torch.Tensor):
        """V [G, P, K, d], c [G, P, K] -> (value, dV, dc)."""
        G, P, K, d = self.shape
        W, b = self.raw(V, c)
        Z = torch.bmm(self.X, W.reshape(G, P * K, d).transpose(1, 2)).view(G, -1, P, K)
        Z = Z + b[:, None]  # [G, n, P, K]
        per_row, dZ = self._loss(Z)  # [G, n, P], [G, n, P, K]
        # float64 sums: float32 round-off in the value stalls the line search near the optimum
        value = (per_row.double() * self.wn).sum() + 0.5 * (self.alpha * V * V).double().sum()
        value = value + 0.5 * (self.bias_alpha * c * c).double().sum()
        R = (dZ * self.wn[None, :, :, None]).reshape(G, -1, P * K)
        dc = R.sum(1).view(G, P, K)
        dW = torch.bmm(R.transpose(1, 2), self.X).view(G, P, K, d) - self.mu * dc[..., None]
        dc = dc + self.bias_alpha * c
        dV = dW / self.sd + self.alpha * V
        return value, dV, dc

    def _loss(self, Z):
        if self.loss == "mse":
            r = Z - self.y.view(1, -1, 1, self.K)
            return 0.5 * (r * r).sum(-1), r
        if self.K == 1:  # binary: one logit, as scikit-learn parametrises it
            z = Z[..., 0]
            t = self.y.to(Z.dtype).view(1, -1, 1)
            per_row = torch.nn.functional.softplus(z) - t * z
            return per_row, (torch.sigmoid(z) - t)[..., None]
        logp = torch.log_softmax(Z, dim=-1)
        oh = self.onehot.view(1, -1, 1, self.K)
        return -(logp * oh).sum(-1), logp.exp() - oh


def fit_batched(
    X: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    alpha: torch.Tensor,
    *,
    n_outputs: int,
    loss: str = "logistic",
    l1: float = 0.0,
    max_iter: int = 500,
    tol: float = 1e-4,
    bias_alpha: float = 0.0,
    num_threads: int | None = None,
    init: BatchedFit | None = None,
) -> BatchedFit:
    """Fit ``G x P`` linear models at once.

    X [G, n, d] float; y [n] class index (long) or [n, K] float targets (``mse``);
    w [P, n] non-negative row weights per problem; alpha [P] L2 strength per problem (in the
    mean-loss scale above); n_outputs = K (1 for binary logistic); bias_alpha: the
    intercept's L2 strength as a multiple of alpha (0 = unpenalised, as in scikit-learn; the
    MDL code needs > 0 so that a probe trained on a one-class prefix stays finite);
    num_threads: torch threads for the fit (None: see ``_threads``); init: a previous fit of
    the same problems (same X, y and w, e.g. at another alpha on a regularisation path):
    its solution is the starting point and its training statistics are reused.
    """
    with _threads(num_threads):
        return _fit(X, y, w, alpha, n_outputs, loss, l1, max_iter, tol, bias_alpha, init)


def _fit(X, y, w, alpha, n_outputs, loss, l1, max_iter, tol, bias_alpha, init) -> BatchedFit:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if (w.sum(1) <= 0).any():
        raise ValueError("every problem needs at least one row with positive weight")
    stats = init.stats if init is not None and init.stats is not None else _train_stats(X, w)
    mu, sd, corr = stats
    obj = _Objective(X, y, w.to(X.dtype), alpha.to(X.dtype), mu, sd, loss, n_outputs, bias_alpha)
    start = None
    if init is not None:  # raw weights back to the standardised variables
        V0 = init.W.to(X.dtype) * obj.sd
        start = (V0, init.b.to(X.dtype) + (obj.mu * init.W.to(X.dtype)).sum(-1))
    if l1 > 0:
        V, c, n_iter, ok = _fista(obj, l1, max_iter, tol, start)
    else:
        scale = 0.25 if loss == "logistic" else 1.0  # curvature of the loss at the start
        delta = max(float(alpha.min()) / scale, 1e-4)
        Pc = _preconditioner(corr, delta, X.shape[1])
        V, c, n_iter, ok = _lbfgs(obj, Pc, max_iter, tol, start)
    if not ok:
        logger.warning("batched probe fit stopped before convergence (%d iterations)", n_iter)
    W, b = obj.raw(V, c)
    return BatchedFit(W, b, n_iter, ok, stats)


def _lbfgs(obj: _Objective, Pc, max_iter: int, tol: float, start=None):
    """L-BFGS-B on the preconditioned variables u (V = u @ M per layer; Pc = (M, L));
    start: (V, c) to begin from (default zeros)."""
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    Pc, L = Pc
    G, P, K, d = obj.shape
    nV = G * P * K * d
    dtype = obj.X.dtype

    def unpack(theta):
        t = torch.from_numpy(theta).to(dtype)
        u = t[:nV].view(G, P * K, d)
        V = torch.bmm(u, Pc).view(G, P, K, d)
        return u, V, t[nV:].view(G, P, K)

    def fun(theta):
        _, V, c = unpack(theta)
        value, dV, dc = obj(V, c)
        du = torch.bmm(dV.reshape(G, P * K, d), Pc.transpose(1, 2))
        grad = torch.cat([du.reshape(-1), dc.reshape(-1)]).double().numpy()
        return float(value), grad

    theta0 = np.zeros(nV + G * P * K)
    if start is not None:
        u0 = torch.bmm(start[0].reshape(G, P * K, d), L)
        theta0 = torch.cat([u0.reshape(-1), start[1].reshape(-1)]).double().numpy()
    # scipy's BLAS threads would spin against torch's for the tiny L-BFGS-B updates
    with threadpool_limits(limits=1, user_api="blas"):
        res = minimize(
            fun,
            theta0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-12, "maxcor": 20},
        )
    _, V, c = unpack(res.x)
    # a line search that fails with a tiny gradient has stopped at float32 precision
    ok = bool(res.success) or float(np.abs(res.jac).max()) < 10 * tol
    return V, c, int(res.nit), ok


def _soft(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.sign(x) * (x.abs() - t).clamp_min(0.0)


def _fista(obj: _Objective, l1: float, max_iter: int, tol: float, start=None):
    """Accelerated proximal gradient; the prox (soft threshold) applies to V, not to c."""
    G, P, K, d = obj.shape
    x_v = torch.zeros(G, P, K, d, dtype=obj.X.dtype)
    x_c = torch.zeros(G, P, K, dtype=obj.X.dtype)
    if start is not None:
        x_v, x_c = start[0].clone(), start[1].clone()
    y_v, y_c = x_v.clone(), x_c.clone()
    t, lip, step = 1.0, 1.0, float("inf")
    for it in range(1, max_iter + 1):  # noqa: B007 (returned)
        f_y, gv, gc = obj(y_v, y_c)
        while True:  # backtracking on the shared step size
            nv = _soft(y_v - gv / lip, l1 / lip)
            nc = y_c - gc / lip
            dv, dc = nv - y_v, nc - y_c
            quad = (gv * dv).sum() + (gc * dc).sum()
            quad = quad + 0.5 * lip * ((dv * dv).sum() + (dc * dc).sum())
            if obj(nv, nc)[0] <= f_y + quad + 1e-6 * abs(float(f_y)) or lip > 1e12:
                break
            lip *= 2.0
        t_next = 0.5 * (1 + (1 + 4 * t * t) ** 0.5)
        step = max((nv - x_v).abs().max().item(), (nc - x_c).abs().max().item())
        y_v = nv + (t - 1) / t_next * (nv - x_v)
        y_c = nc + (t - 1) / t_next * (nc - x_c)
        x_v, x_c, t = nv, nc, t_next
        lip *= 0.9  # let the step grow again
        if step < tol:
            break
    return x_v, x_c, it, step < tol
