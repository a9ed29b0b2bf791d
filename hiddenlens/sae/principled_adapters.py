"""Dictionary adapters for principled evaluation (Makelov, Lange & Nanda 2024).

"Towards Principled Evaluations of Sparse Autoencoders for Interpretability and Control"
compares unsupervised dictionaries with supervised ones on one footing. Every dictionary
here has ``encode(x, labels=None) -> codes`` and ``decode(codes) -> x̂`` (torch tensors,
``x`` [n, d]) and ``edit(x, labels, attribute, targets) -> edited x`` (numpy):

* ``SupervisedAdapter``: codes are the concatenated one-hot attribute values, decode is
  the mean plus the sum of the chosen u_{a,v}; encoding needs the labels.
* ``SAEAdapter``: a hiddenlens SAE; edits through ``supervised.sae_edit``.
* ``PCAAdapter`` / ``NMFAdapter``: sklearn baselines (NMF on data shifted to be
  non-negative); edits shift the codes by the class-mean code difference.
* ``MeanAdapter``: the mean-ablation dictionary (approximation score 0 by definition).

Each is a scikit-learn estimator: constructor arguments stored verbatim, ``fit`` learns
the trailing-underscore state, ``sklearn.base.clone`` gives an unfitted copy and unfitted
use raises ``sklearn.exceptions.NotFittedError``.

(``hiddenlens.sae.train`` fits an SAE on in-memory activations directly: it reads any
``hiddenlens.store.as_source`` input, e.g. ``{hook: x}``.)
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from hiddenlens.sae.supervised import SupervisedDictionary, sae_edit


def _is_fitted(est) -> bool:
    try:
        check_is_fitted(est)
    except NotFittedError:
        return False
    return True


def check_labels(labels, n: int, attribute: str | None = None) -> dict[str, np.ndarray]:
    """Validate ``labels`` (attribute -> [n] values) and, if given, ``attribute`` in it."""
    if not isinstance(labels, dict) or not labels:
        raise TypeError(f"labels must be a non-empty dict attribute -> array, got {labels!r}")
    out = {}
    for a, y in labels.items():
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(
                f"labels[{a!r}] has shape {y.shape}; expected one value per row ({n} rows)"
            )
        out[a] = y
    if attribute is not None:
        if attribute not in out:
            raise ValueError(f"unknown attribute {attribute!r}; known: {sorted(out)}")
        if np.unique(out[attribute]).size < 2:
            raise ValueError(
                f"attribute {attribute!r} has a single value {out[attribute][0]!r}; "
                "an attribute needs at least two values"
            )
    return out


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(_np(x), dtype=np.float32))


def _targets(targets, n: int) -> np.ndarray:
    t = np.asarray(targets)
    if t.ndim == 0:
        return np.full(n, t.item())
    if t.shape != (n,):
        raise ValueError(
            f"targets has shape {t.shape}; expected a scalar or one value per row ({n})"
        )
    return t


def _code_mean_edit(adapter, x, labels, attribute, targets, nonneg=False) -> np.ndarray:
    """Edit in code space: z - mean_z[a = v] + mean_z[a = v'], the error term x - x̂ kept.

    The class means are taken over the given rows. For PCA this is the supervised edit
    projected on the principal subspace; NMF codes are clipped at 0 to stay valid.
    """
    x = _np(x).astype(np.float32)
    lab = check_labels(labels, len(x), attribute)
    y, tgt = lab[attribute], _targets(targets, len(x))
    z = adapter.encode(_t(x)).numpy()
    err = x - adapter.decode(torch.from_numpy(z)).numpy()
    means = {v: z[y == v].mean(0) for v in np.unique(y)}
    unknown = set(np.unique(tgt).tolist()) - set(means)
    if unknown:
        raise ValueError(f"target values {sorted(unknown)} of {attribute!r} never occur in rows")
    shift = np.stack([means[t] - means[v] for v, t in zip(y.tolist(), tgt.tolist())])
    z_new = z + shift
    if nonneg:
        z_new = np.maximum(z_new, 0.0)
    return adapter.decode(torch.from_numpy(z_new.astype(np.float32))).numpy() + err


class SupervisedAdapter(BaseEstimator):
    """A ``SupervisedDictionary`` as a dictionary: codes = one-hot attribute values.

    decode(codes) = center + codes @ U, with U the stacked u_{a,v}; so decode(encode(x,
    labels)) = c + sum_a u_{a, v_a}, the supervised reconstruction. ``sup`` may be already
    fitted (then the adapter is usable at once) or fitted by ``fit(x, labels)`` (which
    fits a clone of it, ``sup_``).
    """

    def __init__(self, sup: SupervisedDictionary | None = None):
        self.sup = sup

    def fit(self, x, labels) -> SupervisedAdapter:
        self.sup_ = clone(self.sup if self.sup is not None else SupervisedDictionary())
        self.sup_.fit(_np(x), labels)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "sup_") or (self.sup is not None and _is_fitted(self.sup))

    def _sup(self) -> SupervisedDictionary:
        check_is_fitted(self)
        return self.sup_ if hasattr(self, "sup_") else self.sup

    @property
    def attributes(self) -> list[str]:
        return list(self._sup().vectors_)

    def _basis(self) -> tuple[torch.Tensor, torch.Tensor]:
        sup = self._sup()
        u = np.concatenate([sup.vectors_[a] for a in sup.vectors_])
        return torch.as_tensor(u).float(), torch.as_tensor(sup.center_).float()

    def encode(self, x, labels=None) -> torch.Tensor:
        if labels is None:
            raise ValueError("the supervised dictionary encodes from labels; pass labels=")
        n = len(x)
        lab = check_labels(labels, n)
        blocks = []
        for a in self.attributes:
            if a not in lab:
                raise ValueError(
                    f"labels lack attribute {a!r}; the dictionary has {self.attributes}"
                )
            vals = self._sup().values_[a]
            pos = {v: i for i, v in enumerate(vals)}
            bad = set(lab[a].tolist()) - set(pos)
            if bad:
                raise ValueError(f"unknown values {sorted(bad)} of {a!r}; known: {vals}")
            blocks.append(np.eye(len(vals), dtype=np.float32)[[pos[v] for v in lab[a].tolist()]])
        return torch.from_numpy(np.concatenate(blocks, 1))

    def decode(self, codes) -> torch.Tensor:
        u, center = self._basis()
        return center + _t(codes) @ u

    def edit(self, x, labels, attribute, targets) -> np.ndarray:
        """x - u_{a,v} + u_{a,v'} per row (``targets``: one v' per row or a scalar)."""
        x = _np(x)
        sup = self._sup()
        lab = check_labels(labels, len(x), attribute)
        tgt = _targets(targets, len(x))
        if attribute not in sup.values_:
            raise ValueError(
                f"unknown attribute {attribute!r}; the dictionary has {self.attributes}"
            )
        bad = set(lab[attribute].tolist()) - set(sup.values_[attribute])
        if bad:
            raise ValueError(
                f"unknown values {sorted(bad)} of {attribute!r}; known: {sup.values_[attribute]}"
            )
        out = np.asarray(x, dtype=np.float64).copy()
        for t in np.unique(tgt):
            rows = tgt == t
            sub = {a: y[rows] for a, y in lab.items()}
            out[rows] = sup.edit(
                x[rows], sub, attribute, t.item() if hasattr(t, "item") else t
            )
        return out.astype(np.float32)


class SAEAdapter(BaseEstimator):
    """A trained hiddenlens SAE; edits go through ``hiddenlens.sae.supervised.sae_edit``:
    the detector latents of each value and the "on" activation of the target's detectors
    are read from the rows passed to ``edit`` (so pass a set large enough to contain every
    value), and the SAE error term is kept. The SAE is trained by ``hiddenlens.sae.train``;
    the adapter counts as fitted once it holds one (``fit`` only returns ``self``)."""

    def __init__(self, sae=None):
        self.sae = sae

    def fit(self, x=None, labels=None) -> SAEAdapter:
        check_is_fitted(self)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return self.sae is not None

    @torch.no_grad()
    def encode(self, x, labels=None) -> torch.Tensor:
        check_is_fitted(self)
        return self.sae.encode(_t(x))

    @torch.no_grad()
    def decode(self, codes) -> torch.Tensor:
        check_is_fitted(self)
        return self.sae.decode(_t(codes))

    @property
    def decoder_norms(self) -> np.ndarray:
        check_is_fitted(self)
        return self.sae.W_dec.detach().norm(dim=1).numpy()

    def edit(self, x, labels, attribute, targets) -> np.ndarray:
        check_is_fitted(self)
        x = _np(x).astype(np.float32)
        lab = check_labels(labels, len(x), attribute)
        tgt = _targets(targets, len(x))
        out = x.copy()
        for t in np.unique(tgt):
            rows = tgt == t
            out[rows] = sae_edit(self.sae, x, lab, attribute, t.item())[rows]
        return out


class PCAAdapter(BaseEstimator):
    """sklearn PCA: codes are the principal-component scores (not whitened)."""

    def __init__(self, n_components: int | None = None, seed: int = 0):
        self.n_components = n_components
        self.seed = seed

    def fit(self, x) -> PCAAdapter:
        from sklearn.decomposition import PCA

        self.pca_ = PCA(n_components=self.n_components, random_state=self.seed).fit(_np(x))
        self.components_ = torch.as_tensor(self.pca_.components_).float()
        self.mean_ = torch.as_tensor(self.pca_.mean_).float()
        return self

    def encode(self, x, labels=None) -> torch.Tensor:
        check_is_fitted(self, "pca_")
        return (_t(x) - self.mean_) @ self.components_.T

    def decode(self, codes) -> torch.Tensor:
        check_is_fitted(self, "pca_")
        return _t(codes) @ self.components_ + self.mean_

    def edit(self, x, labels, attribute, targets) -> np.ndarray:
        return _code_mean_edit(self, x, labels, attribute, targets)


class NMFAdapter(BaseEstimator):
    """sklearn NMF on shifted data: x' = max(x - m, 0) with m the per-feature minimum over
    the fitting rows (NMF needs non-negative input; residual-stream activations are
    signed). decode adds m back, so x̂ = W H + m; rows below m are clipped before encoding."""

    def __init__(self, n_components: int, seed: int = 0, max_iter: int = 400):
        self.n_components = n_components
        self.seed = seed
        self.max_iter = max_iter

    def fit(self, x) -> NMFAdapter:
        from sklearn.decomposition import NMF

        x = _np(x).astype(np.float64)
        self.shift_ = x.min(0)
        self.nmf_ = NMF(
            self.n_components, init="nndsvda", random_state=self.seed, max_iter=self.max_iter
        ).fit(x - self.shift_)
        return self

    def encode(self, x, labels=None) -> torch.Tensor:
        check_is_fitted(self, "nmf_")
        xs = np.maximum(_np(x).astype(np.float64) - self.shift_, 0.0)
        return torch.as_tensor(self.nmf_.transform(xs)).float()

    def decode(self, codes) -> torch.Tensor:
        check_is_fitted(self, "nmf_")
        h = torch.as_tensor(self.nmf_.components_).float()
        return _t(codes) @ h + torch.as_tensor(self.shift_).float()

    def edit(self, x, labels, attribute, targets) -> np.ndarray:
        return _code_mean_edit(self, x, labels, attribute, targets, nonneg=True)


class MeanAdapter(BaseEstimator):
    """The mean-ablation dictionary: no codes, x̂ = the mean of the fitting rows (score 0)."""

    def fit(self, x) -> MeanAdapter:
        self.mean_ = _t(x).mean(0)
        return self

    def encode(self, x, labels=None) -> torch.Tensor:
        check_is_fitted(self, "mean_")
        return torch.zeros(len(x), 0)

    def decode(self, codes) -> torch.Tensor:
        check_is_fitted(self, "mean_")
        return self.mean_.expand(len(codes), -1).clone()

    def edit(self, x, labels, attribute, targets) -> np.ndarray:
        return self.decode(torch.zeros(len(x), 0)).numpy()


def reconstruct(dictionary, x, labels=None) -> np.ndarray:
    """decode(encode(x)) as numpy [n, d]."""
    return _np(dictionary.decode(dictionary.encode(_t(x), labels))).astype(np.float32)
