"""Mixup batches and the geometry of mixed-input features relative to the clean class means.

Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018) trains on
x̃ = λ x_a + (1 − λ) x_b with soft label λ e_a + (1 − λ) e_b, λ ~ Beta(α, α).

Fisher, Meng & Papyan, "Pushing Boundaries: Mixup's Influence on Neural Collapse" (ICLR
2024) look at the last-layer features of mixed inputs: of identical classes they align with
the classifier; of different classes they are *not* the convex combination λ μ_a + (1 − λ) μ_b
of the class means but lie in channels along the a/b decision boundary. :func:`mixup_geometry`
measures both pictures for mixed examples of known (a, b, λ):

- position t = ⟨h − μ_b, μ_a − μ_b⟩ / ‖μ_a − μ_b‖² (0 at μ_b, 1 at μ_a; the convex-combination
  picture predicts t = λ) and line_dist = distance of h to the line through μ_b and μ_a over
  ‖μ_a − μ_b‖;
- with the classifier (W, b), the normalised logit gap g = (2 d(h) − d(μ_a) − d(μ_b)) /
  (d(μ_a) − d(μ_b)), d = z_a − z_b: −1 at μ_b, +1 at μ_a, 0 on the decision boundary; linear in
  h, so the convex-combination picture predicts g = 2λ − 1, the boundary-channel picture g ≈ 0
  for intermediate λ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hiddenlens._keys import metric_key
from hiddenlens.collapse.metrics import parse_classifier
from hiddenlens.collapse.stats import ClassStats, as_float_matrix, as_labels

__all__ = ["MixupGeometry", "mixup_batch", "mix_pairs", "mixup_geometry", "plane_coordinates"]

#: λ window and |g| threshold of the boundary share: mixed examples with λ in MID whose
#: normalised logit gap is within BOUNDARY_TOL of the decision boundary.
MID = (0.2, 0.8)
BOUNDARY_TOL = 0.2


def mixup_batch(x, y, n_classes: int, *, alpha: float = 1.0, rng: np.random.Generator):
    """One mixup batch (Zhang et al. 2018: one λ ~ Beta(α, α) per batch, partners a random
    permutation). x: [B, ...] tensor, y: [B] class ids. Returns (x_mix, y_soft [B, K], lam)."""
    import torch

    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    lam = float(rng.beta(alpha, alpha))
    perm = torch.as_tensor(rng.permutation(x.shape[0]))
    onehot = torch.nn.functional.one_hot(torch.as_tensor(y), n_classes).to(x.dtype)
    return lam * x + (1 - lam) * x[perm], lam * onehot + (1 - lam) * onehot[perm], lam


def mix_pairs(x, y, pairs, lams, *, n_per: int = 8, seed: int = 0):
    """Mixed inputs of given class pairs at given weights: for each (a, b) in ``pairs`` and λ in
    ``lams``, ``n_per`` random partners x_a (class a) and x_b (class b), mixed λ x_a + (1 − λ) x_b.
    x: [n, ...] array or tensor. Returns (x_mix, y_a, y_b, lam), numpy (x_mix like x)."""
    y = as_labels(y)
    if n_per < 1:
        raise ValueError(f"n_per must be >= 1, got {n_per}")
    lams = np.asarray(lams, dtype=float)
    if lams.ndim != 1 or not np.all((lams >= 0) & (lams <= 1)):
        raise ValueError(f"lams must be a 1-D sequence in [0, 1], got {lams}")
    rng = np.random.default_rng(seed)
    ia, ib, ya, yb, lam = [], [], [], [], []
    for a, b in pairs:
        pool_a, pool_b = np.flatnonzero(y == a), np.flatnonzero(y == b)
        if not pool_a.size or not pool_b.size:
            raise ValueError(f"pair ({a}, {b}): class without examples; labels {np.unique(y)}")
        for lv in lams:
            ia.append(rng.choice(pool_a, n_per))
            ib.append(rng.choice(pool_b, n_per))
            ya += [a] * n_per
            yb += [b] * n_per
            lam += [lv] * n_per
    ia, ib, lam = np.concatenate(ia), np.concatenate(ib), np.asarray(lam)
    w = lam.reshape(-1, *([1] * (np.ndim(x) - 1)))
    if hasattr(x, "detach"):
        import torch

        w = torch.as_tensor(w, dtype=x.dtype)
        ia, ib = torch.as_tensor(ia), torch.as_tensor(ib)
    elif np.asarray(x).dtype.kind == "f":
        x, w = np.asarray(x), w.astype(np.asarray(x).dtype)  # keep float32 inputs float32
    return w * x[ia] + (1 - w) * x[ib], np.asarray(ya), np.asarray(yb), lam


@dataclass
class MixupGeometry:
    """Per mixed example [n]: lam, y_a, y_b; position t and line_dist (NaN for same-class mixes);
    gap g (NaN without a classifier or for same-class mixes); same_cos: cosine of h − μ_G with
    the classifier row of its class (same-class mixes only, else NaN)."""

    lam: np.ndarray
    y_a: np.ndarray
    y_b: np.ndarray
    position: np.ndarray
    line_dist: np.ndarray
    gap: np.ndarray
    same_cos: np.ndarray

    @property
    def cross(self) -> np.ndarray:
        return self.y_a != self.y_b

    def curve(self, n_bins: int = 10) -> dict[str, np.ndarray]:
        """Cross-class means of position and gap in ``n_bins`` equal λ bins (NaN where empty)."""
        edges = np.linspace(0, 1, n_bins + 1)
        idx = np.clip(np.digitize(self.lam, edges) - 1, 0, n_bins - 1)
        out = {"lam": (edges[:-1] + edges[1:]) / 2}
        for name in ("position", "gap", "line_dist"):
            v = getattr(self, name)
            out[name] = np.array([_nanmean(v[(idx == k) & self.cross]) for k in range(n_bins)])
        return out

    def to_metrics(self, where: str | None = None) -> dict[str, float]:
        """``collapse/mixup_*``: line_dist, pos_err (mean |t − λ|), pos_corr (Pearson of t and
        λ), gap_err (mean |g − (2λ − 1)|), boundary_share (share of λ in MID with |g| <
        BOUNDARY_TOL), same_class_cos; over cross-class mixes unless named same-class."""
        c = self.cross
        lam, t, g = self.lam[c], self.position[c], self.gap[c]
        mid = (lam >= MID[0]) & (lam <= MID[1])
        vals = {
            "mixup_line_dist": _nanmean(self.line_dist[c]),
            "mixup_pos_err": _nanmean(np.abs(t - lam)),
            "mixup_pos_corr": _corr(t, lam),
            "mixup_gap_err": _nanmean(np.abs(g - (2 * lam - 1))),
            "mixup_boundary_share": _nanmean((np.abs(g[mid]) < BOUNDARY_TOL).astype(float))
            if mid.any() and np.isfinite(g).any()
            else float("nan"),
            "mixup_same_class_cos": _nanmean(self.same_cos[~c]),
        }
        return {metric_key("collapse", k, where): v for k, v in vals.items()}


def mixup_geometry(
    features: Any, lam: Any, y_a: Any, y_b: Any, stats: ClassStats, *, classifier: Any = None
) -> MixupGeometry:
    """Geometry of mixed-input features [n, d] (x̃ = λ x_a + (1 − λ) x_b) relative to the clean
    class means of ``stats`` (from :func:`hiddenlens.collapse.accumulate` on clean features of
    the same layer). classifier: nn.Linear, (W, b) or W, rows indexed by class id."""
    h = as_float_matrix(features)
    n = h.shape[0]
    lam = np.asarray(lam, dtype=float).reshape(-1)
    y_a, y_b = as_labels(y_a, n=n), as_labels(y_b, n=n)
    if lam.shape[0] != n or y_a.shape[0] != n or y_b.shape[0] != n:
        raise ValueError(
            f"features have {n} rows but lam/y_a/y_b have {lam.shape[0]}/{y_a.shape[0]}/"
            f"{y_b.shape[0]}"
        )
    if h.shape[1] != stats.d:
        raise ValueError(f"features have d={h.shape[1]}, class means d={stats.d}")
    missing = np.setdiff1d(np.union1d(y_a, y_b), stats.classes)
    if missing.size:
        raise ValueError(f"classes {missing.tolist()} have no clean mean; {stats.classes}")
    mu_a = stats.means[np.searchsorted(stats.classes, y_a)]
    mu_b = stats.means[np.searchsorted(stats.classes, y_b)]
    seg = mu_a - mu_b  # [n, d]
    seg2 = np.einsum("nd,nd->n", seg, seg)
    cross = seg2 > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.einsum("nd,nd->n", h - mu_b, seg) / seg2
        resid = h - mu_b - t[:, None] * seg
        dist = np.linalg.norm(resid, axis=1) / np.sqrt(seg2)
    t, dist = np.where(cross, t, np.nan), np.where(cross, dist, np.nan)
    gap, same_cos = np.full(n, np.nan), np.full(n, np.nan)
    if classifier is not None:
        gap, same_cos = _classifier_view(h, mu_a, mu_b, y_a, y_b, stats, classifier)
    return MixupGeometry(lam, y_a, y_b, t, dist, gap, same_cos)


def _classifier_view(h, mu_a, mu_b, y_a, y_b, stats, classifier):
    """(normalised logit gap g [n], cosine of same-class mixes with their classifier row [n])."""
    w, b = parse_classifier(classifier)
    if w.shape[1] != h.shape[1] or max(y_a.max(), y_b.max()) >= w.shape[0]:
        raise ValueError(
            f"classifier W {w.shape} does not fit features d={h.shape[1]} and classes up to "
            f"{max(y_a.max(), y_b.max())}"
        )
    bias = np.zeros(w.shape[0]) if b is None else b
    dw = w[y_a] - w[y_b]  # [n, d]
    db = bias[y_a] - bias[y_b]

    def d(v):
        return np.einsum("nd,nd->n", v, dw) + db

    with np.errstate(divide="ignore", invalid="ignore"):
        gap = (2 * d(h) - d(mu_a) - d(mu_b)) / (d(mu_a) - d(mu_b))
        c = h - stats.global_mean
        cos = np.einsum("nd,nd->n", c, w[y_a]) / (
            np.linalg.norm(c, axis=1) * np.linalg.norm(w[y_a], axis=1)
        )
    same = y_a == y_b
    return np.where(same, np.nan, gap), np.where(same, cos, np.nan)


def plane_coordinates(features: Any, vertices: Any) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of ``features`` [n, d] in the affine plane of three ``vertices`` [3, d]
    (e.g. three class means: the face of the class-mean simplex), orthonormal basis from
    v1 − v0, v2 − v0. Returns (points [n, 2], vertex positions [3, 2])."""
    h, v = as_float_matrix(features), as_float_matrix(vertices)
    if v.shape[0] != 3 or v.shape[1] != h.shape[1]:
        raise ValueError(f"vertices must be [3, {h.shape[1]}], got {v.shape}")
    q, r = np.linalg.qr((v[1:] - v[0]).T)  # [d, 2]
    if abs(r[1, 1]) < 1e-12 * abs(r[0, 0]):
        raise ValueError("the three vertices are collinear: they span no plane")
    return (h - v[0]) @ q, (v - v[0]) @ q


def _nanmean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])
