"""Supervised feature dictionaries and principled dictionary evaluation.

Makelov, Lange & Nanda 2024, "Towards Principled Evaluations of Sparse Autoencoders for
Interpretability and Control". Given attribute labels attached to cached rows, a
*supervised* dictionary writes each activation as a centre plus one vector per attribute
value, x ~ c + sum_a u_{a, v_a(x)}, with u_{a,v} = E[x | a = v] - E[x] (the class-mean
differences of the paper). Any dictionary (SAE, supervised, PCA, NMF) is then judged on:

* interpretability: for each attribute value, the best single latent as a detector
  (F1 of "latent active" vs "row has the value", and AUROC of the latent's value);
* control: edit an attribute a: v -> v' inside the dictionary (supervised: swap u_{a,v}
  for u_{a,v'}; SAE: switch off the latents that detect v and switch on those that detect
  v' at their mean active value) and ask whether a classifier of the output follows;
* diagnostics: occlusion (the part of x along u_{a,v} that the reconstruction loses) and
  over-splitting (how many high-precision latents share one attribute value).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted


class SupervisedDictionary(BaseEstimator):
    """x ~ center_ + sum_a vectors_[a][v]; fit from activations and attribute labels.

    A scikit-learn estimator: ``attributes`` (the attribute names to use; None: all of
    ``labels``) is its one parameter; ``center_`` [d], ``values_`` (attribute -> sorted
    values) and ``vectors_`` (attribute -> [n_values, d]) are learned by ``fit``.
    """

    def __init__(self, attributes: list[str] | None = None):
        self.attributes = attributes

    def fit(self, x, labels: dict[str, np.ndarray]) -> SupervisedDictionary:
        """x: [n, d] activations; labels: attribute name -> [n] values (any hashable)."""
        if not isinstance(labels, dict):
            raise TypeError(f"labels must be a dict attribute -> [n] values, got {labels!r}")
        x = np.asarray(x, dtype=np.float64)
        names = self.attributes or sorted(labels)
        if not names:
            raise ValueError("need at least one attribute")
        self.center_ = x.mean(0)
        self.values_, self.vectors_ = {}, {}
        for a in names:
            if a not in labels:
                raise ValueError(f"labels lack attribute {a!r}; given: {sorted(labels)}")
            y = np.asarray(labels[a])
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"labels[{a!r}] has {y.shape[0]} rows, activations {x.shape[0]}")
            vals = np.unique(y)
            self.values_[a] = vals.tolist()
            self.vectors_[a] = np.stack([x[y == v].mean(0) - self.center_ for v in vals])
        return self

    def _check(self):
        check_is_fitted(self, ("center_", "values_", "vectors_"))

    def reconstruct(self, labels: dict[str, np.ndarray]) -> np.ndarray:
        """c + sum_a u_{a, v_a} for each row's labels, [n, d]."""
        self._check()
        n = len(next(iter(labels.values())))
        out = np.tile(self.center_, (n, 1))
        for a, vecs in self.vectors_.items():
            pos = {v: i for i, v in enumerate(self.values_[a])}
            out += vecs[[pos[v] for v in np.asarray(labels[a]).tolist()]]
        return out

    def edit(self, x, labels: dict[str, np.ndarray], attribute: str, new_value) -> np.ndarray:
        """x - u_{a, v(x)} + u_{a, new_value}: change one attribute, keep the rest of x."""
        self._check()
        vals = self.values_[attribute]
        if new_value not in vals:
            raise ValueError(f"{new_value!r} is not a value of {attribute!r}; known: {vals}")
        vecs = self.vectors_[attribute]
        cur = [vals.index(v) for v in np.asarray(labels[attribute]).tolist()]
        return np.asarray(x, dtype=np.float64) - vecs[cur] + vecs[vals.index(new_value)]


def _auroc(score: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties get their average rank)."""
    pos = y.sum()
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    _, inv, counts = np.unique(score, return_inverse=True, return_counts=True)
    r = (np.cumsum(counts) - (counts - 1) / 2.0)[inv]  # 1-based average ranks
    return float((r[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def interpretability(codes, labels: dict[str, np.ndarray]) -> list[dict]:
    """Best single latent per attribute value: F1 (with its precision and recall) of
    (code > 0) as a detector of the value, and AUROC of the code.

    codes: [n, m] latent activations of any dictionary (SAE latents, PCA/NMF coefficients).
    """
    codes = np.asarray(codes, dtype=np.float64)
    active = (codes > 0).astype(np.float64)
    rows = []
    for a, y_all in labels.items():
        y_all = np.asarray(y_all)
        for v in np.unique(y_all):
            y = y_all == v
            tp = y.astype(np.float64) @ active
            fires = active.sum(0)
            f1 = 2 * tp / np.maximum(fires + y.sum(), 1)
            best = int(f1.argmax())
            rows.append(
                {
                    "attribute": a,
                    "value": v.item() if hasattr(v, "item") else v,
                    "best_latent": best,
                    "f1": float(f1[best]),
                    "precision": float(tp[best] / max(fires[best], 1)),
                    "recall": float(tp[best] / max(y.sum(), 1)),
                    "auroc": _auroc(codes[:, best], y),
                    "base_rate": float(y.mean()),
                }
            )
    return rows


def detectors(codes, y: np.ndarray, min_precision: float = 0.9, min_recall: float = 0.02):
    """Latents that detect a binary label: precision >= min_precision, recall >= min_recall."""
    active = np.asarray(codes) > 0
    y = np.asarray(y, dtype=bool)
    fires = active.sum(0)
    tp = active[y].sum(0)
    prec = tp / np.maximum(fires, 1)
    rec = tp / max(int(y.sum()), 1)
    return np.where((prec >= min_precision) & (rec >= min_recall))[0], prec, rec


def over_splitting(codes, labels: dict[str, np.ndarray], **kw) -> list[dict]:
    """Per attribute value: number of high-precision detector latents and their joint recall.

    A value split over many detectors each with small recall is over-split (Makelov et al.).
    """
    codes = np.asarray(codes)
    out = []
    for a, y_all in labels.items():
        for v in np.unique(np.asarray(y_all)):
            y = np.asarray(y_all) == v
            idx, _, rec = detectors(codes, y, **kw)
            union = (codes[:, idx] > 0).any(1) if idx.size else np.zeros(len(y), bool)
            out.append(
                {
                    "attribute": a,
                    "value": v.item() if hasattr(v, "item") else v,
                    "n_detectors": int(idx.size),
                    "max_single_recall": float(rec[idx].max()) if idx.size else 0.0,
                    "union_recall": float(union[y].mean()) if y.any() else float("nan"),
                }
            )
    return out


def occlusion(x, x_hat, sup: SupervisedDictionary, labels: dict[str, np.ndarray]) -> list[dict]:
    """Share of each attribute value's signal kept by a reconstruction.

    For rows with a = v, compares the projections of (x - c) and (x_hat - c) on the unit
    vector of u_{a,v}: kept = mean proj(x_hat) / mean proj(x). Values far below 1 mark a
    causally relevant direction the dictionary occludes.
    """
    sup._check()
    x, x_hat = np.asarray(x, np.float64) - sup.center_, np.asarray(x_hat, np.float64) - sup.center_
    out = []
    for a, vecs in sup.vectors_.items():
        y = np.asarray(labels[a])
        for v, u in zip(sup.values_[a], vecs):
            nu = np.linalg.norm(u)
            if nu == 0 or not (y == v).any():
                continue
            px, ph = x[y == v] @ (u / nu), x_hat[y == v] @ (u / nu)
            out.append(
                {
                    "attribute": a,
                    "value": v,
                    "signal_norm": float(nu),
                    "kept": float(ph.mean() / px.mean()) if px.mean() else float("nan"),
                }
            )
    return out


@torch.no_grad()
def sae_edit(
    sae, x, labels: dict[str, np.ndarray], attribute: str, new_value, min_precision: float = 0.9
) -> np.ndarray:
    """Edit an attribute through an SAE: detectors of each row's current value switched off,
    detectors of ``new_value`` switched on at their mean activation on rows with that value;
    the SAE error term (x - x_hat) is kept so only the edit changes."""
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    z = sae.encode(xt)
    err = xt - sae.decode(z)
    codes = z.numpy()
    y_all = np.asarray(labels[attribute])
    new_det, _, _ = detectors(codes, y_all == new_value, min_precision)
    on_rows = y_all == new_value
    fill = codes[on_rows][:, new_det]
    fill = np.where(fill > 0, fill, np.nan)
    mean_on = np.nan_to_num(np.nanmean(fill, 0)) if new_det.size else np.zeros(0)
    z_new = z.clone()
    for v in np.unique(y_all):
        if v == new_value:
            continue
        det, _, _ = detectors(codes, y_all == v, min_precision)
        rows = torch.as_tensor(np.where(y_all == v)[0])
        if det.size:
            z_new[rows[:, None], torch.as_tensor(det)[None, :]] = 0.0
        if new_det.size:
            z_new[rows[:, None], torch.as_tensor(new_det)[None, :]] = torch.as_tensor(
                mean_on, dtype=z.dtype
            )
    return (sae.decode(z_new) + err).numpy()


def control_accuracy(edited, target_value, classify) -> float:
    """Fraction of edited rows that ``classify`` (activations -> predicted values) assigns
    to ``target_value``: does the output follow the edit?"""
    pred = np.asarray(classify(np.asarray(edited)))
    return float((pred == target_value).mean())
