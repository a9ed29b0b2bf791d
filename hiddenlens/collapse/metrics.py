"""Neural-collapse metrics NC1–NC4 and CDNV.

Definitions follow Papyan, Han & Donoho (PNAS 2020), with M = [μ_c − μ_G] and classifier W
(rows w_c), C classes:

- NC1 = Tr(Σ_W Σ_B⁺) / C.
- CDNV(c, c′) = (σ²_c + σ²_c′) / (2‖μ_c − μ_c′‖²) (Galanti et al. 2022), a stable
  alternative when Σ_B is ill-conditioned.
- NC2: equinorm = std/mean of ‖μ_c − μ_G‖ (and of ‖w_c‖) — a dispersion, not a mean of
  signed differences; equiangularity = std of pairwise cosines and the Frobenius form
  ‖G/‖G‖_F − (I − 11ᵀ/C)/√(C−1)‖_F with G the Gram matrix; maximal-angle deviation =
  mean |cos + 1/(C−1)|.
- NC3 = ‖Wᵀ/‖W‖_F − M/‖M‖_F‖²_F.
- NC4 = share of rows where the network's argmax differs from the nearest class centre.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from hiddenlens._keys import metric_key
from hiddenlens.collapse.stats import (
    DEFAULT_CHUNK_ROWS,
    ClassStats,
    accumulate,
    as_float_matrix,
    as_labels,
    is_reiterable,
    iter_chunks,
)

logger = logging.getLogger(__name__)


class SigmaBWarning(RuntimeWarning):
    """Σ_B is singular or ill-conditioned; NC1 used a truncated pseudo-inverse."""


def nc1(stats: ClassStats, *, rtol: float = 1e-8) -> dict[str, float]:
    """NC1 = Tr(Σ_W Σ_B⁺)/C, plus the rank of Σ_B that was inverted.

    Σ_B = M Mᵀ/C has rank at most min(C − 1, d). Eigenvalues below ``rtol`` × the largest are
    treated as zero; if that leaves fewer than min(C − 1, d) directions a
    :class:`SigmaBWarning` is issued (the class means are (nearly) collinear and NC1 only
    measures spread along the directions that remain — prefer CDNV then).
    """
    c = stats.n_classes
    m = stats.centred_means  # [C, d]
    # eigen-directions of Σ_B from the thin SVD of M (cheaper and better conditioned)
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    eig = s**2 / c
    expected = min(c - 1, stats.d)
    if eig.size == 0 or eig[0] <= 0:
        warnings.warn(
            "all class means coincide (Σ_B = 0): NC1 is undefined and reported as NaN; use CDNV",
            SigmaBWarning,
            stacklevel=2,
        )
        return {"nc1": float("nan"), "nc1_rank": 0.0}
    keep = eig > rtol * eig[0]
    rank = int(keep.sum())
    if rank < expected:
        warnings.warn(
            f"Σ_B is singular or ill-conditioned: {rank} of {expected} eigenvalues exceed "
            f"{rtol:g} × the largest; NC1 uses the pseudo-inverse on the {rank}-dim span of "
            "the class means (CDNV is the stable alternative)",
            SigmaBWarning,
            stacklevel=2,
        )
    u = vt[keep]  # [r, d] orthonormal eigenvectors of Σ_B
    # Tr(Σ_W Σ_B⁺) = Σ_k u_kᵀ Σ_W u_k / λ_k
    quad = np.einsum("kd,de,ke->k", u, stats.sigma_w, u)
    return {"nc1": float((quad / eig[keep]).sum() / c), "nc1_rank": float(rank)}


def cdnv_matrix(stats: ClassStats) -> np.ndarray:
    """CDNV(c, c′) = (σ²_c + σ²_c′)/(2‖μ_c − μ_c′‖²), [C, C] (diagonal NaN)."""
    var = stats.class_var
    diff = stats.means[:, None, :] - stats.means[None, :, :]
    dist2 = np.einsum("ijd,ijd->ij", diff, diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (var[:, None] + var[None, :]) / (2.0 * dist2)
    np.fill_diagonal(out, np.nan)
    return out


def cdnv(stats: ClassStats) -> float:
    """Mean CDNV over unordered class pairs."""
    mat = cdnv_matrix(stats)
    iu = np.triu_indices(stats.n_classes, 1)
    vals = mat[iu]
    if not np.isfinite(vals).all():
        warnings.warn(
            "two class means coincide: their CDNV is infinite and excluded from the mean",
            SigmaBWarning,
            stacklevel=2,
        )
        vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else float("nan")


def _pair_cosines(v: np.ndarray) -> np.ndarray:
    """Cosines of all unordered pairs of rows; NaN (with a warning) for a zero row."""
    norms = np.linalg.norm(v, axis=1)
    if np.any(norms == 0):
        warnings.warn(
            f"class vectors {np.flatnonzero(norms == 0).tolist()} have zero norm (a class "
            "mean equals the global mean, or a classifier row is zero); their cosines are NaN",
            SigmaBWarning,
            stacklevel=3,
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        u = v / norms[:, None]
    return (u @ u.T)[np.triu_indices(v.shape[0], 1)]


def etf_distance(vectors: Any) -> float:
    """‖G/‖G‖_F − (I − 11ᵀ/C)/√(C−1)‖_F for G = VVᵀ, V the [C, d] class vectors.

    Zero exactly when the rows form a (rotated, scaled) simplex equiangular tight frame.
    """
    v = np.asarray(vectors, dtype=np.float64)
    c = v.shape[0]
    if v.ndim != 2 or c < 2:
        raise ValueError(f"need [C >= 2, d] class vectors, got shape {v.shape}")
    g = v @ v.T
    target = (np.eye(c) - np.ones((c, c)) / c) / np.sqrt(c - 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # all-zero vectors -> NaN
        return float(np.linalg.norm(g / np.linalg.norm(g) - target))


def nc2(vectors: np.ndarray, *, prefix: str) -> dict[str, float]:
    """Equinorm, equiangularity (std and Frobenius form) and maximal-angle deviation."""
    c = vectors.shape[0]
    norms = np.linalg.norm(vectors, axis=1)
    cos = _pair_cosines(vectors)
    with np.errstate(divide="ignore", invalid="ignore"):
        equinorm = float(norms.std() / norms.mean())
    return {
        f"{prefix}_equinorm": equinorm,
        f"{prefix}_equiangular": float(cos.std()),
        f"{prefix}_etf_dist": etf_distance(vectors),
        f"{prefix}_maxangle": float(np.abs(cos + 1.0 / (c - 1)).mean()),
    }


def nc3(weight: np.ndarray, centred_means: np.ndarray) -> float:
    """NC3 = ‖Wᵀ/‖W‖_F − M/‖M‖_F‖²_F (W [C, d]; M as rows [C, d])."""
    w = weight / np.linalg.norm(weight)
    m = centred_means / np.linalg.norm(centred_means)
    return float(np.sum((w - m) ** 2))


def nearest_centre(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Index of the nearest class mean per row, [n]."""
    # ‖x − μ‖² = ‖x‖² − 2xμ + ‖μ‖²; ‖x‖² does not change the argmin
    return np.argmin(-2.0 * x @ means.T + np.einsum("cd,cd->c", means, means)[None, :], axis=1)


def parse_classifier(classifier: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(W [K, d], b [K] or None) from an nn.Linear, a (W, b) pair or an array W."""
    if classifier is None:
        raise ValueError("classifier is None")
    if hasattr(classifier, "weight"):
        w = classifier.weight
        b = getattr(classifier, "bias", None)
    elif isinstance(classifier, tuple | list) and len(classifier) == 2:
        w, b = classifier
    else:
        w, b = classifier, None
    w = as_float_matrix(w)
    if b is not None:
        b = as_float_matrix(np.asarray(b.detach().cpu() if hasattr(b, "detach") else b)[:, None])
        b = b[:, 0]
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"bias has {b.shape[0]} entries for {w.shape[0]} classifier rows")
    return w, b


def _class_index(stats: ClassStats, k: int | None) -> None:
    if k is None:
        return
    if stats.classes.min() < 0 or stats.classes.max() >= k:
        raise ValueError(
            f"labels must be in [0, {k}) to match the classifier's {k} rows; "
            f"got classes {stats.classes.tolist()}"
        )


def metrics(
    features: Any,
    labels: Any = None,
    *,
    classifier: Any = None,
    predictions: Any = None,
    num_classes: int | None = None,
    name: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    rtol: float = 1e-8,
) -> dict[str, float]:
    """All neural-collapse metrics as a flat dict of floats.

    features: an array/tensor [n, d] (more dims are flattened) with ``labels`` [n]; a
        ``(store, hook)`` pair with labels [n] or a ``store.meta`` column name; or an
        iterable of ``(X, y)`` chunks (labels=None). Everything is streamed in chunks of
        ``chunk_rows`` rows with float64 accumulators, so memory is O(chunk·d + d² + C·d).
    classifier: nn.Linear, (W [K, d], b [K]) or W — enables classifier NC2, NC3 and, with
        its argmax as the network's prediction, NC4. Labels must then be in [0, K).
    predictions: the network's predicted class per row [n] (array sources only); used for
        NC4 instead of the classifier's argmax.
    num_classes: when given, every class 0..num_classes−1 must be present.
    name: the hook point (or split) the keys end with, e.g. ``"collapse/nc1/encoder.layer.3"``.

    Keys (each ``collapse/<metric>[/<name>]``): nc1, nc1_rank, cdnv, means_{equinorm,equiangular,etf_dist,maxangle},
    [classifier_{...}, nc3], [nc4, ncc_acc], n_rows, n_classes. NC4 needs a second pass; it
    is skipped with a warning for a one-shot iterator.
    """
    stats = accumulate(features, labels, chunk_rows=chunk_rows)
    check_stats(stats, num_classes=num_classes)
    out = stats_metrics(stats, classifier=classifier, rtol=rtol)
    if classifier is not None or predictions is not None:
        if is_reiterable(features):
            out.update(nc4(stats, features, labels, classifier, predictions, chunk_rows=chunk_rows))
        else:
            warnings.warn(
                "NC4 needs a second pass over the data; a one-shot iterator was given, so "
                "nc4 is omitted (pass a list, an array or a (store, hook) pair)",
                RuntimeWarning,
                stacklevel=2,
            )
    return with_suffix(out, name)


def with_suffix(out: dict[str, float], name: str | None) -> dict[str, float]:
    """Metric keys ``collapse/<metric>[/<name>]`` for a dict of named values."""
    return {metric_key("collapse", k, name): v for k, v in out.items()}


def check_stats(stats: ClassStats, *, num_classes: int | None = None) -> None:
    """Reject inputs on which the metrics are meaningless."""
    if stats.n_classes < 2:
        raise ValueError(
            f"need at least 2 classes, got {stats.n_classes} (classes {stats.classes.tolist()})"
        )
    if num_classes is not None:
        if stats.n < num_classes:
            raise ValueError(f"fewer rows ({stats.n}) than classes ({num_classes})")
        missing = sorted(set(range(num_classes)) - set(stats.classes.tolist()))
        if missing:
            raise ValueError(f"classes {missing} have no rows; every class needs at least one")
    if stats.n <= stats.n_classes:
        raise ValueError(
            f"need more rows than classes to measure within-class spread: {stats.n} rows, "
            f"{stats.n_classes} classes"
        )


def stats_metrics(stats: ClassStats, *, classifier: Any = None, rtol: float = 1e-8) -> dict:
    """NC1, CDNV, NC2 and (with a classifier) NC3 from accumulated statistics."""
    out: dict[str, float] = {"n_rows": float(stats.n), "n_classes": float(stats.n_classes)}
    out.update(nc1(stats, rtol=rtol))
    out["cdnv"] = cdnv(stats)
    with np.errstate(divide="ignore", invalid="ignore"):  # Σ_B = 0 already warned in nc1
        out["within_over_between"] = float(np.trace(stats.sigma_w) / np.trace(stats.sigma_b))
    m = stats.centred_means
    out.update(nc2(m, prefix="means"))
    if classifier is not None:
        w, _ = parse_classifier(classifier)
        _class_index(stats, w.shape[0])
        if w.shape[1] != stats.d:
            raise ValueError(f"classifier width {w.shape[1]} != feature width {stats.d}")
        w_c = w[stats.classes]
        out.update(nc2(w_c, prefix="classifier"))
        out["nc3"] = nc3(w_c, m)
    return out


def nc4(
    stats: ClassStats,
    features: Any,
    labels: Any,
    classifier: Any = None,
    predictions: Any = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> dict[str, float]:
    """NC4 (second pass): share of rows where network argmax ≠ nearest class centre.

    Also returns ncc_acc, the nearest-class-centre accuracy against the labels.
    """
    classes = stats.classes
    w = b = None
    if predictions is not None:
        pred_all = as_labels(predictions, n=stats.n)
    else:
        w, b = parse_classifier(classifier)
    disagree = correct = seen = 0
    for x, y in iter_chunks(features, labels, chunk_rows=chunk_rows):
        x = as_float_matrix(x)
        y = as_labels(y, n=x.shape[0])
        ncc = classes[nearest_centre(x, stats.means)]
        if predictions is not None:
            net = pred_all[seen : seen + x.shape[0]]
        else:
            logits = x @ w.T + (0.0 if b is None else b[None, :])
            net = np.argmax(logits, axis=1)
        disagree += int((net != ncc).sum())
        correct += int((ncc == y).sum())
        seen += x.shape[0]
    return {"nc4": disagree / seen, "ncc_acc": correct / seen}
