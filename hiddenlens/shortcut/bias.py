"""Shortcut-bias score of Hermann et al., "On the Foundations of Shortcut Learning" (ICLR 2024).

On cue-conflict items (core and shortcut point to different classes) every decision follows
exactly one of the two features. A model's *shortcut reliance* is the fraction of conflict
items on which it follows the shortcut, its *core reliance* the fraction on which it follows
the core (they sum to 1 for a binary decision). The **shortcut bias** is the model's shortcut
reliance minus that of the unbiased reference, the exact Bayes-optimal classifier of the
generating distribution, on the same items:

    bias = R_s(model) - R_s(Bayes),   in [-R_s(Bayes), 1 - R_s(Bayes)].

A model that relies on the features exactly as much as the ideal observer scores 0; one that
always follows the shortcut scores the maximum 1 - R_s(Bayes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from hiddenlens._keys import metric_key
from hiddenlens.shortcut.data import ShortcutDataset, TwoFeatureSplit


def _scores_from_output(out, n: int) -> np.ndarray:
    """Binary decision scores [n] (> 0 means class 1) from a model output."""
    arr = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
    if arr.ndim == 2 and arr.shape == (n, 2):
        return (arr[:, 1] - arr[:, 0]).astype(np.float64)
    if arr.shape in ((n,), (n, 1)):
        return arr.reshape(n).astype(np.float64)
    raise ValueError(
        f"model output has shape {tuple(arr.shape)} for {n} inputs; accepted [n] or [n, 1] "
        "(one logit for class 1) or [n, 2] (two class logits)"
    )


def predict_scores(model, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Decision scores [n] of ``model`` on x [n, ...]: > 0 means class 1.

    ``model`` is a torch ``nn.Module`` (run in eval mode without gradients) or any callable
    taking a float32 array/tensor batch and returning logits of shape [b], [b, 1] or [b, 2].
    """
    if not callable(model):
        raise TypeError(f"model must be an nn.Module or a callable, got {type(model).__name__}")
    import torch

    is_module = isinstance(model, torch.nn.Module)
    if is_module:
        was_training = model.training
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    parts = []
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                xb = np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)
                inp = torch.from_numpy(xb).to(device) if is_module else xb
                parts.append(_scores_from_output(model(inp), len(xb)))
    finally:
        if is_module and was_training:
            model.train()
    return np.concatenate(parts) if parts else np.zeros(0)


def reliance(split: TwoFeatureSplit, decisions: np.ndarray) -> dict[str, float]:
    """Core and shortcut reliance of 0/1 ``decisions`` [n] on the conflict items of ``split``."""
    d = _check_decisions(decisions, len(split))
    conflict = np.sign(split.core) != np.sign(split.shortcut)
    if not conflict.any():
        raise ValueError(f"split {split.name!r} has no cue-conflict items to measure reliance on")
    follows_short = d[conflict] == (split.shortcut[conflict] > 0)
    follows_core = d[conflict] == (split.core[conflict] > 0)
    return {"shortcut": float(follows_short.mean()), "core": float(follows_core.mean())}


def _check_decisions(decisions, n: int) -> np.ndarray:
    d = np.asarray(decisions)
    if d.shape != (n,):
        raise ValueError(f"decisions have shape {d.shape}; expected ({n},) to match the split")
    if not np.isin(d, (0, 1)).all():
        raise ValueError("decisions must be 0/1 class labels")
    return d.astype(np.int64)


def bias_from_predictions(
    dataset: ShortcutDataset, decisions: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Bias, reliances and per-split accuracy from 0/1 decisions per split name.

    ``decisions`` must hold "conflict"; every other split present in both ``decisions`` and
    ``dataset.splits`` (or "train") gets an accuracy. Keys: "shortcut/bias",
    "shortcut/max_bias", "shortcut/shortcut_reliance", "shortcut/core_reliance",
    "shortcut/bayes_shortcut_reliance", "shortcut/bayes_core_reliance",
    "shortcut/accuracy/<split>", "shortcut/bayes_accuracy/<split>".
    """
    if "conflict" not in decisions or "conflict" not in dataset.splits:
        raise ValueError("the shortcut bias is measured on the 'conflict' split; it is missing")
    out: dict[str, float] = {}
    conflict = dataset.splits["conflict"]
    model_rel = reliance(conflict, decisions["conflict"])
    bayes_rel = reliance(conflict, dataset.bayes_predict(conflict.x))
    out[metric_key("shortcut", "bias")] = model_rel["shortcut"] - bayes_rel["shortcut"]
    out[metric_key("shortcut", "max_bias")] = 1.0 - bayes_rel["shortcut"]
    for feature in ("shortcut", "core"):
        out[metric_key("shortcut", f"{feature}_reliance")] = model_rel[feature]
        out[metric_key("shortcut", f"bayes_{feature}_reliance")] = bayes_rel[feature]
    named = {"train": dataset.train, **dataset.splits}
    for name, dec in decisions.items():
        if name not in named:
            raise ValueError(f"decisions for unknown split {name!r}; accepted {sorted(named)}")
        split = named[name]
        d = _check_decisions(dec, len(split))
        out[metric_key("shortcut", "accuracy", name)] = float((d == split.y).mean())
        bayes = dataset.bayes_predict(split.x)
        out[metric_key("shortcut", "bayes_accuracy", name)] = float((bayes == split.y).mean())
    return out


def bias(
    model: Callable | object, dataset: ShortcutDataset, batch_size: int = 4096
) -> dict[str, float]:
    """Shortcut bias of ``model`` on ``dataset`` against its exact Bayes-optimal classifier.

    Returns the flat dict of :func:`bias_from_predictions`, with accuracy on every split of
    ``dataset`` (and on "train").
    """
    if not isinstance(dataset, ShortcutDataset):
        raise TypeError(f"dataset must be a ShortcutDataset, got {type(dataset).__name__}")
    named = {"train": dataset.train, **dataset.splits}
    decisions = {
        name: (predict_scores(model, split.x, batch_size) > 0).astype(np.int64)
        for name, split in named.items()
    }
    return bias_from_predictions(dataset, decisions)
