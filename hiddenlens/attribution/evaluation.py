"""Evaluating attributions: deletion / insertion curves, ROAR / DiffROAR, grid pointing game.

- Deletion / insertion (Petsiuk et al., "RISE", 2018): remove (insert) features in order of
  decreasing attribution and track the target score; a faithful map gives a fast drop (low
  deletion AUC) and a fast rise (high insertion AUC).
- ROAR (Hooker et al., "A Benchmark for Interpretability Methods in Deep Neural Networks",
  2019) and DiffROAR (Shah, Jain & Netrapalli, "Do Input Gradients Highlight Discriminative
  Features?", 2021): keep only the top-k (or bottom-k) fraction of features ranked by the
  attribution, mask the rest, retrain (or re-evaluate) and measure test accuracy;
  DiffROAR(k) = acc(top-k kept) - acc(bottom-k kept). Positive: the attribution ranks
  discriminative features first; about zero: no better than random.
- Grid pointing game (Böhle et al., "B-cos networks" / Rao et al., "Better Understanding
  Differences in Attribution Methods via Systematic Evaluations", 2022): images are a grid of
  cells and only one cell can explain the target; the score is the fraction of positive
  attribution that falls in that cell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hiddenlens._keys import metric_key
from hiddenlens.attribution._core import (
    Target,
    check_baseline,
    repeat_target,
    run_model,
    select_target,
)

__all__ = [
    "PerturbationCurves",
    "deletion_insertion",
    "keep_by_attribution",
    "diffroar",
    "region_fraction",
    "grid_pointing_game",
    "grid_cell_fractions",
]


@dataclass
class PerturbationCurves:
    """fractions [S+1]; deletion / insertion: [batch, S+1] target scores."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray

    def to_metrics(self) -> dict[str, float]:
        """``attribution/deletion_auc`` and ``attribution/insertion_auc`` (mean curves)."""
        auc = {
            name: float(np.trapezoid(curve.mean(0), self.fractions))
            for name, curve in (("deletion", self.deletion), ("insertion", self.insertion))
        }
        return {metric_key("attribution", f"{name}_auc"): v for name, v in auc.items()}


def _order(attr: Tensor) -> Tensor:
    """[batch, D] feature indices by decreasing attribution (ties broken by index)."""
    return torch.argsort(attr.reshape(attr.shape[0], -1), dim=1, descending=True, stable=True)


def deletion_insertion(
    model,
    inputs: Tensor,
    attributions: Tensor,
    *,
    target: Target = None,
    baseline: Tensor | float | None = None,
    n_steps: int = 20,
    probabilities: bool = True,
) -> PerturbationCurves:
    """Deletion and insertion curves. inputs/attributions: [batch, ...]; all steps in one batch.

    probabilities: score the softmax probability of an integer target (else the raw target).
    """
    if attributions.shape != inputs.shape:
        raise ValueError(
            f"attributions {tuple(attributions.shape)} must match inputs {tuple(inputs.shape)}"
        )
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    x = inputs.detach()
    base = check_baseline(baseline, x)
    b, d = x.shape[0], x[0].numel()
    order = _order(attributions.detach())
    counts = np.linspace(0, d, n_steps + 1).round().astype(int)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(d).expand(b, d))  # rank of each feature
    first = torch.stack([rank < c for c in counts])  # [S+1, b, D]: features among the first c
    xf, bf = x.reshape(1, b, d), base.reshape(1, b, d)
    deleted = torch.where(first, bf, xf).reshape(-1, *x.shape[1:])
    inserted = torch.where(first, xf, bf).reshape(-1, *x.shape[1:])
    curves = []
    with torch.no_grad():
        for pert in (deleted, inserted):
            out = run_model(model, pert)
            if probabilities and target is not None and not callable(target):
                out = torch.softmax(out, dim=1)
            vals = select_target(out, repeat_target(target, n_steps + 1), (n_steps + 1) * b)
            curves.append(vals.reshape(n_steps + 1, b).T.cpu().numpy().astype(np.float64))
    return PerturbationCurves(counts / d, curves[0], curves[1])


def keep_by_attribution(
    x: np.ndarray,
    attr: np.ndarray,
    fraction: float,
    *,
    keep: str = "top",
    fill: float | np.ndarray = 0.0,
    absolute: bool = True,
) -> np.ndarray:
    """Keep the top (or bottom) ``fraction`` of each example's features by attribution, set the
    rest to ``fill`` (a scalar or a per-feature array, e.g. the training mean). x, attr: [N, ...]."""
    if keep not in ("top", "bottom"):
        raise ValueError(f"keep={keep!r}; accepted: 'top', 'bottom'")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if x.shape != attr.shape:
        raise ValueError(f"attributions {attr.shape} must match data {x.shape}")
    n = x.shape[0]
    flat = x.reshape(n, -1)
    score = np.abs(attr.reshape(n, -1)) if absolute else attr.reshape(n, -1)
    k = int(round(fraction * flat.shape[1]))
    order = np.argsort(-score if keep == "top" else score, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    fill_arr = np.broadcast_to(np.asarray(fill, dtype=flat.dtype).reshape(-1), flat.shape[1:])
    return np.where(mask, flat, fill_arr[None]).reshape(x.shape)


def diffroar(
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    attributions: tuple[np.ndarray | None, np.ndarray],
    *,
    fractions: Sequence[float] = (0.1, 0.25, 0.5),
    fit: Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]] | None = None,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
    fill: float | np.ndarray = 0.0,
    absolute: bool = True,
) -> dict[str, float]:
    """DiffROAR at each kept fraction k.

    data: (X_train, y_train, X_test, y_test); attributions: (A_train, A_test) of the same
    shapes (A_train may be None when re-evaluating). Either ``fit(X, y) -> predict`` (retrain on
    masked training data: ROAR) or ``predict(X) -> labels`` (re-evaluate the original model on
    masked test data). Returns {"attribution/acc_top/k=0.10", "attribution/acc_bottom/k=0.10",
    "attribution/diffroar/k=0.10", ...}.
    """
    if (fit is None) == (predict is None):
        raise ValueError("pass exactly one of fit (retrain) or predict (re-evaluate)")
    x_tr, y_tr, x_te, y_te = data
    a_tr, a_te = attributions
    if fit is not None and a_tr is None:
        raise ValueError("retraining needs training-set attributions (attributions[0])")
    out: dict[str, float] = {}
    for k in fractions:
        acc = {}
        for side in ("top", "bottom"):
            te = keep_by_attribution(x_te, a_te, k, keep=side, fill=fill, absolute=absolute)
            if fit is not None:
                tr = keep_by_attribution(x_tr, a_tr, k, keep=side, fill=fill, absolute=absolute)
                pred = fit(tr, y_tr)(te)
            else:
                pred = predict(te)
            acc[side] = float(np.mean(np.asarray(pred) == y_te))
        where = f"k={k:.2f}"
        out[metric_key("attribution", "acc_top", where)] = acc["top"]
        out[metric_key("attribution", "acc_bottom", where)] = acc["bottom"]
        out[metric_key("attribution", "diffroar", where)] = acc["top"] - acc["bottom"]
    return out


def region_fraction(
    attributions: np.ndarray | Tensor, region: np.ndarray, *, positive: bool = True
) -> np.ndarray:
    """[N] share of (positive, else absolute) attribution inside ``region`` (bool, [N, H, W] or
    [H, W]). Attributions [N, H, W] or [N, C, H, W] (channels summed first)."""
    a = (
        attributions.detach().cpu().numpy()
        if isinstance(attributions, Tensor)
        else np.asarray(attributions)
    )
    if a.ndim == 4:
        a = a.sum(1)
    a = np.clip(a, 0, None) if positive else np.abs(a)
    region = np.broadcast_to(np.asarray(region, dtype=bool), a.shape)
    total = a.reshape(a.shape[0], -1).sum(1)
    inside = (a * region).reshape(a.shape[0], -1).sum(1)
    return np.where(total > 0, inside / np.where(total > 0, total, 1), np.nan)


def grid_cell_fractions(
    attributions: np.ndarray | Tensor,
    grid: tuple[int, int],
    cell: int | np.ndarray,
    *,
    positive: bool = True,
) -> np.ndarray:
    """[N] share of positive attribution in the grid cell (row-major index) of each example.

    attributions: [N, h, w] or [N, C, h, w] at any resolution that splits into ``grid`` (rows,
    cols) of equal cells (an image, or a cell-aligned feature map); NaN where no mass is positive.
    """
    a = (
        attributions.detach().cpu().numpy()
        if isinstance(attributions, Tensor)
        else np.asarray(attributions)
    )
    n, h, w = a.shape[0], a.shape[-2], a.shape[-1]
    rows, cols = grid
    if h % rows or w % cols:
        raise ValueError(f"map {h}x{w} does not split into a {rows}x{cols} grid")
    cells = np.broadcast_to(np.asarray(cell), (n,))
    if cells.min() < 0 or cells.max() >= rows * cols:
        raise ValueError(
            f"cell index must be in 0..{rows * cols - 1}, got {cells.min()}..{cells.max()}"
        )
    region = np.zeros((n, h, w), dtype=bool)
    ch, cw = h // rows, w // cols
    for i, c in enumerate(cells):
        r, q = divmod(int(c), cols)
        region[i, r * ch : (r + 1) * ch, q * cw : (q + 1) * cw] = True
    return region_fraction(a, region, positive=positive)


def grid_pointing_game(
    attributions: np.ndarray | Tensor,
    grid: tuple[int, int],
    cell: int | np.ndarray,
    *,
    positive: bool = True,
) -> float:
    """Mean fraction of positive attribution in the cell (row-major index) that holds the evidence.

    attributions: [N, H, W] or [N, C, H, W] of images made of a ``grid`` (rows, cols) of equal cells.
    """
    return float(np.nanmean(grid_cell_fractions(attributions, grid, cell, positive=positive)))
