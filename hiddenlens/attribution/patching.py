"""Activation patching, attribution patching, their comparison, and back-patching.

- Activation patching (causal tracing; Meng et al., "Locating and Editing Factual Associations
  in GPT", 2022; Wang et al., "Interpretability in the Wild", 2022): run the corrupted input,
  replace the activation at one hook point (and one position) by its value on the clean input,
  and record how much the metric moves towards its clean value.
- Attribution patching (Nanda, "Attribution Patching", 2023; Syed et al. 2023): the first-order
  estimate  grad_corrupted(metric) . (act_clean - act_corrupted)  of the same effect, for every
  point and position from one forward and one backward pass. Exact when the metric is linear
  in the activation.
- Back-patching (Biran et al., "Hopping Too Late: Exploring the Limitations of Large Language
  Models on Multi-Hop Queries", 2024): the hidden state of a later layer j at a position is
  injected at an earlier layer i < j in a new forward pass; swept over (source, target), and
  per query over a dataset (``back_patching_sweep``): the share of the failed queries that
  some back-patch fixes (up to 57% of failed 2-hop queries in the paper).

Effects are ``metric(patched) - metric(corrupted)`` so both patching methods are comparable;
``metric(output) -> scalar tensor`` aggregates over the batch (e.g. mean logit difference).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hiddenlens._keys import metric_key
from hiddenlens.attribution._core import PERTURBATION_HINT, Inputs, gradient_probes, run_model
from hiddenlens.attribution.layer import _resolve, capture_activations

__all__ = [
    "PatchingResult",
    "activation_patching",
    "attribution_patching",
    "compare_patching",
    "back_patching",
    "back_patching_sweep",
    "BackPatchingResult",
    "BackPatchingSweep",
]

Metric = Callable[[Any], Tensor]


@dataclass
class PatchingResult:
    """effects[hook] : [n_positions] (one entry when not per position) = metric change."""

    effects: dict[str, np.ndarray]
    clean_metric: float
    corrupted_metric: float
    method: str

    def normalised(self) -> dict[str, np.ndarray]:
        """Effects as a fraction of the clean-corrupted gap (1 = fully restored)."""
        gap = self.clean_metric - self.corrupted_metric
        return {k: v / gap if gap else v * np.nan for k, v in self.effects.items()}

    def flat(self) -> np.ndarray:
        return np.concatenate([self.effects[k].ravel() for k in self.effects])


def _metric(metric: Metric, output: Any) -> float:
    value = metric(output)
    if not isinstance(value, Tensor):
        raise TypeError(f"metric must return a Tensor, got {type(value).__name__}")
    return float(value.sum())


def _position_slice(act: Tensor, pos: int | None) -> tuple:
    return (slice(None),) if pos is None else (slice(None), pos)


def _positions(
    act: Tensor, per_position: bool, positions: Sequence[int] | None
) -> list[int | None]:
    if not per_position or act.ndim < 3:
        return [None]
    seq = act.shape[1]
    pos = list(range(seq)) if positions is None else list(positions)
    bad = [p for p in pos if not -seq <= p < seq]
    if bad:
        raise ValueError(f"positions {bad} out of range for sequence length {seq}")
    return pos


def activation_patching(
    model,
    clean_inputs: Inputs,
    corrupted_inputs: Inputs,
    hook_points: str | Sequence[str],
    metric: Metric,
    *,
    per_position: bool = True,
    positions: Sequence[int] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> PatchingResult:
    """Patch the clean activation into the corrupted run, one (hook point, position) at a time.

    Activations [batch, seq, ...] are patched per position (axis 1); others as a whole.
    """
    from hiddenlens.hooks import patch

    names = _resolve(model, hook_points)
    clean = capture_activations(model, clean_inputs, names, forward_kwargs)
    with torch.no_grad():
        m_clean = _metric(metric, run_model(model, clean_inputs, forward_kwargs))
        m_corr = _metric(metric, run_model(model, corrupted_inputs, forward_kwargs))
        effects = {}
        for name in names:
            src = clean[name]
            row = []
            for pos in _positions(src, per_position, positions):
                idx = _position_slice(src, pos)

                def fn(act: Tensor, idx=idx, src=src, name=name) -> Tensor:
                    _check_same(act, src, name)
                    out = act.clone()
                    out[idx] = src[idx]
                    return out

                with patch(model, {name: fn}):
                    row.append(
                        _metric(metric, run_model(model, corrupted_inputs, forward_kwargs)) - m_corr
                    )
            effects[name] = np.asarray(row)
    return PatchingResult(effects, m_clean, m_corr, "activation_patching")


def _check_same(act: Tensor, src: Tensor, name: str) -> None:
    if act.shape != src.shape:
        raise ValueError(
            f"clean and corrupted activations at {name!r} differ in shape: {tuple(src.shape)} vs "
            f"{tuple(act.shape)}; pad both inputs to the same length"
        )


def attribution_patching(
    model,
    clean_inputs: Inputs,
    corrupted_inputs: Inputs,
    hook_points: str | Sequence[str],
    metric: Metric,
    *,
    per_position: bool = True,
    positions: Sequence[int] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> PatchingResult:
    """Linear estimate of activation patching: grad . (clean - corrupted) per point/position."""

    names = _resolve(model, hook_points)
    clean = capture_activations(model, clean_inputs, names, forward_kwargs)
    with gradient_probes(model, names) as seen:
        value = metric(run_model(model, corrupted_inputs, forward_kwargs))
        if not isinstance(value, Tensor) or not value.requires_grad:
            raise TypeError("the metric does not require grad. " + PERTURBATION_HINT)
        grads = torch.autograd.grad(value.sum(), [seen[n][1] for n in names], allow_unused=True)
    with torch.no_grad():
        m_clean = _metric(metric, run_model(model, clean_inputs, forward_kwargs))
    effects = {}
    for name, g in zip(names, grads):
        corr = seen[name][0]
        _check_same(corr, clean[name], name)
        g = torch.zeros_like(corr) if g is None else g
        contrib = g * (clean[name] - corr)
        pos = _positions(corr, per_position, positions)
        if pos == [None]:
            effects[name] = np.asarray([float(contrib.sum())])
        else:
            per = contrib.transpose(0, 1).reshape(corr.shape[1], -1).sum(1)
            effects[name] = per[pos].detach().cpu().numpy().astype(np.float64)
    return PatchingResult(effects, m_clean, float(value.detach().sum()), "attribution_patching")


def compare_patching(
    reference: PatchingResult, estimate: PatchingResult, k: int = 5
) -> dict[str, float]:
    """Agreement of two patching results over all (point, position) effects: Pearson and
    Spearman correlation, max |difference|, and overlap of the top-k by absolute effect,
    as ``attribution/patching_<pearson|spearman|max_abs_diff|top<k>_overlap>``."""
    from scipy.stats import pearsonr, spearmanr

    a, b = reference.flat(), estimate.flat()
    if a.shape != b.shape:
        raise ValueError(f"results cover different points/positions: {a.shape} vs {b.shape}")
    k = min(k, a.size)
    top_a = set(np.argsort(-np.abs(a))[:k])
    top_b = set(np.argsort(-np.abs(b))[:k])
    const = a.std() == 0 or b.std() == 0
    out = {
        "pearson": float("nan") if const else float(pearsonr(a, b)[0]),
        "spearman": float("nan") if const else float(spearmanr(a, b)[0]),
        "max_abs_diff": float(np.max(np.abs(a - b))),
        f"top{k}_overlap": len(top_a & top_b) / k,
    }
    return {metric_key("attribution", f"patching_{name}"): v for name, v in out.items()}


@dataclass
class BackPatchingResult:
    """metric[j, i]: metric after injecting layer j's state at layer i (NaN unless i < j)."""

    metric: np.ndarray
    baseline_metric: float
    hook_points: list[str]

    def improvement(self) -> np.ndarray:
        return self.metric - self.baseline_metric

    def best(self) -> tuple[str, str, float]:
        """(source, target, metric) of the best back-patch."""
        j, i = np.unravel_index(np.nanargmax(self.metric), self.metric.shape)
        return self.hook_points[j], self.hook_points[i], float(self.metric[j, i])


def _back_patch_runs(model, inputs, names, position, forward_kwargs):
    """Yield (j, i, output) with the state of ``names[j]`` at ``position`` injected into
    ``names[i]``, for every i < j, after checking the layers share one activation shape.
    Callers iterate it under ``torch.no_grad()``."""
    from hiddenlens.hooks import patch

    if len(names) < 2:
        raise ValueError(f"back_patching needs at least two layers, got {names}")
    acts = capture_activations(model, inputs, names, forward_kwargs)
    shapes = {tuple(a.shape) for a in acts.values()}
    if len(shapes) != 1:
        raise ValueError(f"layers must share one activation shape, got {sorted(shapes)}")
    seq = next(iter(acts.values())).shape[1] if position is not None else None
    if position is not None and not -seq <= position < seq:
        raise ValueError(f"position {position} out of range for sequence length {seq}")
    for j in range(1, len(names)):
        src = acts[names[j]]
        idx = _position_slice(src, position)
        for i in range(j):

            def fn(act: Tensor, idx=idx, src=src) -> Tensor:
                new = act.clone()
                new[idx] = src[idx]
                return new

            with patch(model, {names[i]: fn}):
                yield j, i, run_model(model, inputs, forward_kwargs)


def back_patching(
    model,
    inputs: Inputs,
    hook_points: Sequence[str],
    metric: Metric,
    *,
    position: int | None = -1,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> BackPatchingResult:
    """Sweep (source layer j, target layer i < j): inject the state of ``hook_points[j]`` at
    ``position`` (None: all positions) into ``hook_points[i]`` and rerun.

    hook_points: layers in forward order whose activations have the same shape (residual
    stream / encoder layer outputs). For the per-query sweep of the paper (which failed
    queries some back-patch fixes) see :func:`back_patching_sweep`.
    """
    names = _resolve(model, list(hook_points))
    n = len(names)
    out = np.full((n, n), np.nan)
    with torch.no_grad():
        for j, i, output in _back_patch_runs(model, inputs, names, position, forward_kwargs):
            out[j, i] = _metric(metric, output)
        base = _metric(metric, run_model(model, inputs, forward_kwargs))
    return BackPatchingResult(out, base, names)


@dataclass
class BackPatchingSweep:
    """Per-query back-patching over a dataset (Biran et al. 2024).

    correct[j, i, q]: query q is answered correctly after injecting layer j's state at
    layer i (False unless i < j); baseline[q]: correct without patching.
    """

    correct: np.ndarray
    baseline: np.ndarray
    hook_points: list[str]
    position: int | None

    @property
    def failed(self) -> np.ndarray:
        """[n_queries] queries the unpatched model gets wrong."""
        return ~self.baseline

    def fixed_fraction(self) -> np.ndarray:
        """[n, n] share of the failed queries that the back-patch (j, i) fixes; NaN unless
        i < j (and everywhere when no query failed)."""
        n = len(self.hook_points)
        out = np.full((n, n), np.nan)
        if self.failed.any():
            lower = np.tril(np.ones((n, n), bool), k=-1)
            out[lower] = self.correct[:, :, self.failed].mean(-1)[lower]
        return out

    def fixed_by_any(self) -> float:
        """Share of the failed queries that at least one back-patch (j, i < j) fixes."""
        if not self.failed.any():
            return float("nan")
        return float(self.correct[:, :, self.failed].any((0, 1)).mean())

    def broken_fraction(self) -> np.ndarray:
        """[n, n] share of the correct queries that the back-patch (j, i) breaks."""
        n = len(self.hook_points)
        out = np.full((n, n), np.nan)
        if self.baseline.any():
            lower = np.tril(np.ones((n, n), bool), k=-1)
            out[lower] = 1.0 - self.correct[:, :, self.baseline].mean(-1)[lower]
        return out

    def best(self) -> tuple[str, str, float]:
        """(source, target, fixed fraction) of the back-patch that fixes the most failures."""
        frac = self.fixed_fraction()
        if np.isnan(frac).all():
            return "", "", float("nan")
        j, i = np.unravel_index(np.nanargmax(frac), frac.shape)
        return self.hook_points[j], self.hook_points[i], float(frac[j, i])

    def to_metrics(self) -> dict[str, float]:
        """attribution/back_patching_{baseline_accuracy,fixed_by_any,best_fixed}."""
        out = {
            "baseline_accuracy": float(self.baseline.mean()),
            "n_failed": float(self.failed.sum()),
            "fixed_by_any": self.fixed_by_any(),
            "best_fixed": self.best()[2],
        }
        return {metric_key("attribution", f"back_patching_{k}"): v for k, v in out.items()}


def back_patching_sweep(
    model,
    inputs: Inputs,
    hook_points: Sequence[str],
    correct: Callable[[Any], Tensor],
    *,
    position: int | None = -1,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> BackPatchingSweep:
    """Every back-patch (source j, target i < j) on every query of a dataset: which of the
    queries the model fails are answered correctly once layer j's hidden state at
    ``position`` (the last token, as in the paper) is injected at layer i.

    correct(output) -> [batch] bool tensor (e.g. ``output[:, -1].argmax(-1) == answers``).
    """
    names = _resolve(model, list(hook_points))
    n = len(names)

    def judge(output) -> np.ndarray:
        ok = correct(output)
        if not isinstance(ok, Tensor) or ok.ndim != 1:
            raise TypeError(
                "correct(output) must return a [batch] bool tensor, got "
                f"{type(ok).__name__} {tuple(getattr(ok, 'shape', ()))}"
            )
        return ok.detach().cpu().numpy().astype(bool)

    with torch.no_grad():
        base = judge(run_model(model, inputs, forward_kwargs))
        grid = np.zeros((n, n, len(base)), bool)
        for j, i, output in _back_patch_runs(model, inputs, names, position, forward_kwargs):
            grid[j, i] = judge(output)
    return BackPatchingSweep(grid, base, names, position)
