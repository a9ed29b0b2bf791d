"""Layer sweeps: one probe per hook point, all layers (and all folds) in one optimisation.

The accuracy-by-layer curve of "CNN features off-the-shelf" (Razavian et al. 2014) and of
BERT probing work, with the hygiene the probing literature asks for: held-out folds
(grouped by document by default when the rows are tokens, so tokens of one text never
sit on both sides),
a pooled out-of-fold score with a bootstrap confidence interval (resampling groups when
given), the majority-class chance level, and the out-of-fold cross-entropy that the
V-information complexity (``complexity.py``) is computed from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from hiddenlens._keys import ci_names, metric_key
from hiddenlens.probe._alpha import C_GRID, fit_cv
from hiddenlens.probe._folds import fold_assignment, resolve_groups, task_of
from hiddenlens.probe._solver import fit_batched, nll
from hiddenlens.store.source import as_source, read_hooks, row_labels

logger = logging.getLogger(__name__)

PROBES = ("linear", "nearest_mean")


@dataclass
class SweepResult:
    """Per-layer probe scores.  Arrays are indexed like ``hook_points``.

    score: pooled out-of-fold accuracy (classification) or R^2 (regression); ci_low /
    ci_high: bootstrap percentile interval; fold_scores [L, F]; chance: majority-class
    accuracy (0 for R^2); log_loss_bits: out-of-fold cross-entropy in bits per row and
    prior_bits the cross-entropy of the training-fold class frequencies (classification).
    """

    hook_points: list[str]
    metric: str
    score: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    fold_scores: np.ndarray
    chance: float
    n_rows: int
    name: str = "probe"
    log_loss_bits: np.ndarray | None = None
    prior_bits: float | None = None
    extra: dict = field(default_factory=dict)

    def to_metrics(self) -> dict[str, float]:
        """``probe/{name}/{hook}``, ``probe/{name}_ci_low/{hook}``, ``..._ci_high``, chance,
        and the linear probe's L2 strength ``probe/alpha/{hook}`` (``{name}_alpha`` when the
        sweep was given its own name)."""
        out = {metric_key("probe", f"{self.name}_chance"): float(self.chance)}
        low, high = ci_names(self.name)
        for i, h in enumerate(self.hook_points):
            out[metric_key("probe", self.name, h)] = float(self.score[i])
            out[metric_key("probe", low, h)] = float(self.ci_low[i])
            out[metric_key("probe", high, h)] = float(self.ci_high[i])
        alpha = np.asarray(self.extra.get("alpha", []), float)
        metric = "alpha" if self.name in ("probe", self.metric) else f"{self.name}_alpha"
        for h, a in zip(self.hook_points, alpha):
            if np.isfinite(a):
                out[metric_key("probe", metric, h)] = float(a)
        return out

    def best(self) -> tuple[str, float]:
        """(hook point, score) of the best layer."""
        i = int(np.nanargmax(self.score))
        return self.hook_points[i], float(self.score[i])

    def selectivity(self, control: SweepResult) -> np.ndarray:
        """Task score minus control-task score per layer (Hewitt & Liang 2019)."""
        if control.hook_points != self.hook_points:
            raise ValueError("control sweep must cover the same hook points in the same order")
        return self.score - control.score


def sweep(
    store,
    labels,
    hook_points=None,
    *,
    probe="linear",
    cv=5,
    alpha: float | str | None = None,
    l1: float = 0.0,
    groups="auto",
    rows=None,
    task: str = "auto",
    seed: int = 0,
    n_boot: int = 200,
    ci: float = 0.95,
    name: str | None = None,
    max_iter: int = 300,
    tol: float = 1e-3,
    device: str = "cpu",
) -> SweepResult:
    """Fit a probe per hook point with ``cv``-fold cross-validation.

    store: an ``ActivationStore``, a dict ``hook -> array [n, d]`` or anything
    :func:`~hiddenlens.store.as_source` accepts; labels: array [n] aligned with the rows,
    or the name of a ``meta`` column; hook_points: names or
    None for all; probe: "linear" (batched logistic / ridge), "nearest_mean", or any
    scikit-learn estimator (fitted in a loop on the same folds); cv: number of folds or a
    scikit-learn splitter; alpha: the L2 strength in the mean-loss scale on standardised
    features (``1 / (C n_train)``: scikit-learn's C); None (default) or "cv": chosen per
    layer and outer fold by 3-fold inner cross-validation (grouped like the outer folds)
    over scikit-learn's C in 0.01 ... 100, as ``LinearProbe()`` and ``LogisticRegressionCV``
    do, every layer x fold x inner fold in one batched fit per candidate along a
    warm-started path (``_alpha.fit_cv``); a number fixes it; the alpha used per layer
    (geometric mean over folds) is in ``extra["alpha"]`` and ``to_metrics``; groups: "auto"
    (default: the source's
    ``sample_idx`` whenever several rows share one, i.e. token rows are grouped by
    document), None (ungrouped rows: an explicit choice, recorded in ``extra["groups"]``;
    a per-document label then warns), a ``meta`` column name or a group id per row; grouped
    folds come with a group bootstrap; rows:
    indices of the rows to use (a subsample). tol: gradient tolerance of the joint L-BFGS
    on standardised features; 1e-3 rather than scikit-learn's 1e-4 because one joint run
    otherwise keeps polishing the slowest (near-separable) layer: on 20k MiniLM rows x 6
    layers it is 4x faster and held-out accuracy stays within 0.25 point of scikit-learn's
    (benchmarks/probe.py --tol compares).
    """
    store = as_source(store)
    arrays = read_hooks(store, hook_points, rows)
    hooks = list(arrays)
    n = next(iter(arrays.values())).shape[0]
    y = row_labels(store, labels, rows)
    groups, grouping = resolve_groups(store, groups, y, rows)
    task = task_of(y) if task == "auto" else task
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'auto', 'classification' or 'regression', got {task!r}")
    if isinstance(probe, str) and probe not in PROBES:
        raise ValueError(
            f"probe must be one of {PROBES} or a scikit-learn estimator, got {probe!r}"
        )
    if task == "regression" and probe == "nearest_mean":
        raise ValueError("probe='nearest_mean' needs class labels, not a continuous target")
    enc, n_out, classes = _encode(y, task)
    strat = enc if task == "classification" else None
    test_fold, train_w = fold_assignment(strat, n, cv, groups, seed)
    alpha = _check_alpha(alpha)
    oof = np.zeros((len(hooks), n, n_out), np.float32)
    fit_info = {"n_iter": 0, "converged": True}
    chosen = np.full(len(hooks), np.nan)
    by_d: dict[int, list[int]] = {}
    for i, h in enumerate(hooks):
        by_d.setdefault(arrays[h].shape[1], []).append(i)
    for idx in by_d.values():
        X = torch.from_numpy(np.stack([np.asarray(arrays[hooks[i]], np.float32) for i in idx]))
        oof[idx], info = _oof(
            X,
            enc,
            train_w,
            test_fold,
            probe,
            task,
            n_out,
            dict(alpha=alpha, l1=l1, max_iter=max_iter, tol=tol, device=device, seed=seed),
            groups,
        )
        chosen[idx] = info.pop("alpha")
        fit_info["n_iter"] = max(fit_info["n_iter"], info["n_iter"])
        fit_info["converged"] &= info["converged"]
    metric = "accuracy" if task == "classification" else "r2"
    result = _summarise(oof, enc, test_fold, task, groups, n_boot, ci, seed)
    log_loss, prior = (None, None)
    if task == "classification" and probe != "nearest_mean":
        log_loss, prior = _cross_entropy_bits(oof, enc, test_fold, train_w, len(classes))
    chance = float(np.bincount(enc).max() / n) if task == "classification" else 0.0
    return SweepResult(
        hooks,
        metric,
        *result,
        chance=chance,
        n_rows=n,
        name=name or metric,
        log_loss_bits=log_loss,
        prior_bits=prior,
        extra={"alpha": chosen, "n_classes": len(classes), "groups": grouping, **fit_info},
    )


def _encode(y: np.ndarray, task: str):
    if task == "regression":
        y = y.astype(np.float64)
        if not np.all(np.isfinite(y)):
            raise ValueError("regression targets contain NaN or inf")
        return y, 1, np.array([])
    from hiddenlens.probe.linear import check_labels

    classes, enc = check_labels(y, len(y))
    return enc, (1 if len(classes) == 2 else len(classes)), classes


def _check_alpha(alpha) -> float | str:
    if alpha is None:
        return "cv"
    if isinstance(alpha, str):
        if alpha != "cv":
            raise ValueError(f"alpha must be a number >= 0, None or 'cv', got {alpha!r}")
        return alpha
    if not float(alpha) >= 0:
        raise ValueError(f"alpha must be a number >= 0, None or 'cv', got {alpha!r}")
    return float(alpha)


def _oof(X, enc, train_w, test_fold, probe, task, n_out, kw, groups) -> tuple[np.ndarray, dict]:
    """Out-of-fold logits (or predictions) for every row [G, n, K], and solver info
    (with the L2 strength used per layer, NaN for probes without one)."""
    G, n, _ = X.shape
    rows = np.arange(n)
    fold = np.where(test_fold >= 0, test_fold, 0)
    info = {"n_iter": 0, "converged": True, "alpha": np.full(G, np.nan)}
    if isinstance(probe, str):
        W = torch.from_numpy(train_w)
        if probe == "nearest_mean":
            Z = _nearest_mean_logits(X, torch.from_numpy(enc), W, int(enc.max()) + 1)
            if n_out == 1:  # binary outputs are one logit everywhere else
                Z = (Z[..., 1:] - Z[..., :1]).nan_to_num(posinf=1e30, neginf=-1e30)
        else:
            if task == "regression":
                scale = float(np.std(enc)) or 1.0
                target = torch.from_numpy((enc / scale).astype(np.float32))[:, None]
            else:
                scale, target = 1.0, torch.from_numpy(enc)
            Z, info = _linear_logits(X.to(kw["device"]), target, W, task, n_out, kw, groups)
            Z = Z.cpu() * scale
        return Z[:, fold, rows].numpy(), info  # each row from the fold that held it out
    return _oof_estimator(X.numpy(), enc, train_w, test_fold, probe, task, n_out), info


def _linear_logits(X, target, W, task, n_out, kw, groups) -> tuple[torch.Tensor, dict]:
    """Logits [G, P, n, K] of every fold's linear probe; alpha fixed or chosen per layer
    and fold by inner CV (``_alpha.fit_cv``: each (layer, fold) keeps its own)."""
    fit_kw = dict(
        n_outputs=n_out,
        loss="mse" if task == "regression" else "logistic",
        l1=kw["l1"],
        max_iter=kw["max_iter"],
        tol=kw["tol"],
    )
    if kw["alpha"] != "cv":
        fit = fit_batched(X, target, W, torch.full((W.shape[0],), kw["alpha"]), **fit_kw)
        alpha = np.full(X.shape[0], kw["alpha"])
        return fit.logits(X), {"n_iter": fit.n_iter, "converged": fit.converged, "alpha": alpha}
    Cs = np.asarray(C_GRID)
    fit, best = fit_cv(X, target, W.numpy(), Cs, groups=groups, seed=kw["seed"], **fit_kw)
    alpha = 1.0 / (Cs[best] * W.sum(1).numpy()[None])  # [G, P]
    alpha = np.exp(np.log(alpha).mean(1))  # geometric mean over folds, per layer
    info = {"n_iter": fit.n_iter, "converged": fit.converged, "alpha": alpha}
    return fit.logits(X), info


def _nearest_mean_logits(X, enc, W, K) -> torch.Tensor:
    """Negative squared distance to each training-fold class mean: [G, P, n, K]."""
    onehot = torch.nn.functional.one_hot(enc, K).to(X.dtype)  # [n, K]
    cw = W[:, :, None] * onehot[None]  # [P, n, K]
    counts = cw.sum(1).clamp_min(1.0)  # [P, K]
    P = W.shape[0]
    flat = cw.permute(0, 2, 1).reshape(P * K, -1)  # [P*K, n]
    means = torch.stack([flat @ X[g] for g in range(X.shape[0])])  # [G, P*K, d]
    means = means / counts.reshape(1, P * K, 1)
    d2 = -2 * torch.bmm(X, means.transpose(1, 2)) + (means * means).sum(-1)[:, None, :]
    Z = -d2.view(X.shape[0], -1, P, K).permute(0, 2, 1, 3)
    empty = (cw.sum(1) == 0)[None, :, None, :]  # classes absent from a fold never win
    return Z.masked_fill(empty, -float("inf"))


def _oof_estimator(X, enc, train_w, test_fold, estimator, task, n_out) -> np.ndarray:
    from sklearn.base import clone

    oof = np.zeros((X.shape[0], X.shape[1], n_out), np.float32)
    for f in range(train_w.shape[0]):
        tr, te = train_w[f] > 0, test_fold == f
        for g in range(X.shape[0]):
            est = clone(estimator).fit(X[g][tr], enc[tr])
            if task == "regression":
                oof[g, te, 0] = est.predict(X[g][te])
            else:
                pred = np.asarray(est.predict(X[g][te])).astype(np.int64)
                # encode hard predictions as logits with the predicted class on top
                logits = np.full((te.sum(), max(n_out, 2)), -30.0, np.float32)
                logits[np.arange(te.sum()), pred] = 30.0
                oof[g, te] = logits[:, 1:2] - logits[:, :1] if n_out == 1 else logits
    return oof


def _predict(oof: np.ndarray) -> np.ndarray:
    return (oof[..., 0] > 0).astype(np.int64) if oof.shape[-1] == 1 else oof.argmax(-1)


def _summarise(oof, y, test_fold, task, groups, n_boot, ci, seed):
    """(score, ci_low, ci_high, fold_scores) from out-of-fold outputs."""
    held = test_fold >= 0
    units = groups[held] if groups is not None else np.arange(held.sum())
    _, unit = np.unique(units, return_inverse=True)
    rng = np.random.default_rng(seed)
    n_units = unit.max() + 1
    counts = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot)  # [B, U]
    F = test_fold.max() + 1
    yh = y[held]
    scores, lows, highs, folds = [], [], [], np.zeros((oof.shape[0], F))
    for g in range(oof.shape[0]):
        if task == "classification":
            hit = (_predict(oof[g]) == y)[held].astype(np.float64)
            stats = np.stack([np.bincount(unit, hit, n_units), np.bincount(unit, None, n_units)], 1)
            full, boot = stats.sum(0), counts @ stats
            score, dist = full[0] / full[1], boot[:, 0] / boot[:, 1]
            folds[g] = [hit[test_fold[held] == f].mean() for f in range(F)]
        else:
            pred = oof[g, :, 0][held]
            cols = [np.ones_like(yh), yh, yh * yh, (yh - pred) ** 2]
            stats = np.stack([np.bincount(unit, c, n_units) for c in cols], 1)
            full, boot = stats.sum(0), counts @ stats

            def r2(s):
                return 1 - s[..., 3] / np.maximum(s[..., 2] - s[..., 1] ** 2 / s[..., 0], 1e-300)

            score, dist = r2(full), r2(boot)
            for f in range(F):
                m = test_fold[held] == f
                folds[g, f] = 1 - ((yh[m] - pred[m]) ** 2).sum() / max(
                    ((yh[m] - yh[m].mean()) ** 2).sum(), 1e-300
                )
        scores.append(score)
        lows.append(np.quantile(dist, (1 - ci) / 2))
        highs.append(np.quantile(dist, 1 - (1 - ci) / 2))
    return np.array(scores), np.array(lows), np.array(highs), folds


def _cross_entropy_bits(oof, y, test_fold, train_w, K):
    """Out-of-fold cross-entropy (bits/row) per layer, and that of the training-fold prior."""
    held = test_fold >= 0
    t = torch.from_numpy(oof[:, held])[:, None]  # [G, 1, rows, K]
    per_row = nll(t, torch.from_numpy(y[held]))[:, 0]
    ll = per_row.mean(1).numpy() / np.log(2)
    onehot = np.eye(K)[y]
    prior_counts = train_w @ onehot + 0.5  # [F, K], add-half smoothing keeps it finite
    prior = prior_counts / prior_counts.sum(1, keepdims=True)
    prior_bits = -np.log2(prior[test_fold[held], y[held]]).mean()
    return ll, float(prior_bits)
