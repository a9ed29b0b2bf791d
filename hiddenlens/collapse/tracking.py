"""Per-layer, per-epoch neural-collapse tracking for a training loop.

Papyan, Han & Donoho (2020) follow NC1–NC4 through the terminal phase of training, i.e.
after the training error first reaches zero. :class:`CollapseTracker` runs the model on a
fixed evaluation set at the end of each epoch, captures the requested hook points with
:func:`hiddenlens.hooks.capture`, and records all metrics per layer plus the layer-in vs
layer-out variability ratio (Tirer et al., "Perturbation Analysis of Neural Collapse").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from hiddenlens.collapse.layers import variability_ratio
from hiddenlens.collapse.metrics import check_stats, nc4, stats_metrics, with_suffix
from hiddenlens.collapse.stats import accumulate, as_labels

logger = logging.getLogger(__name__)


class CollapseTracker:
    """Record NC metrics per hook point at the end of each epoch.

    model: an nn.Module whose output is the logits [n, K] (or a tuple starting with them).
    hook_points: hook names in network order (see :func:`hiddenlens.hook_points`).
    x_eval, y_eval: the fixed evaluation set (usually the training set), tensors/arrays.
    classifier: module path of the last linear layer (e.g. ``"fc"``); its input
        (``"fc:input"``) is tracked too and gets classifier NC2 and NC3.
    batch_size: evaluation batch size. every: record every ``every`` epochs.

    ``history`` is a list of flat dicts with "epoch", "train_error" and metric keys such as
    "nc1/net.2"; NC4 compares each layer's nearest class centre with the network's argmax.
    """

    def __init__(
        self,
        model: Any,
        hook_points: Sequence[str],
        x_eval: Any,
        y_eval: Any,
        *,
        classifier: str | None = None,
        batch_size: int = 1024,
        every: int = 1,
    ) -> None:
        self.model = model
        self.hook_points = list(hook_points)
        self.x_eval = x_eval
        self.y_eval = y_eval
        self.classifier = classifier
        self.batch_size = batch_size
        self.every = every
        if batch_size < 1 or every < 1:
            raise ValueError(f"batch_size and every must be >= 1, got {batch_size}, {every}")
        self.history: list[dict[str, float]] = []

    @property
    def feature_hook(self) -> str | None:
        return None if self.classifier is None else f"{self.classifier}:input"

    def _hooks(self) -> list[str]:
        hooks = list(self.hook_points)
        if self.feature_hook is not None and self.feature_hook not in hooks:
            hooks.append(self.feature_hook)
        return hooks

    def collect(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Features per hook [n, d] (flattened) and network predictions [n] on x_eval."""
        import torch

        from hiddenlens.hooks import capture

        hooks = self._hooks()
        feats: dict[str, list[np.ndarray]] = {h: [] for h in hooks}
        preds: list[np.ndarray] = []
        x = torch.as_tensor(self.x_eval)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), capture(self.model, hooks, stop_early=False) as cap:
                for start in range(0, x.shape[0], self.batch_size):
                    out = cap.run(x[start : start + self.batch_size])
                    out = out[0] if isinstance(out, tuple | list) else out
                    preds.append(out.argmax(-1).cpu().numpy())
                    for h in hooks:
                        feats[h].append(cap[h].reshape(out.shape[0], -1).cpu().numpy())
        finally:
            self.model.train(was_training)
        return {h: np.concatenate(v) for h, v in feats.items()}, np.concatenate(preds)

    def on_epoch_end(self, epoch: int, *, train_error: float | None = None) -> dict | None:
        """Measure and append to ``history`` (every ``every`` epochs); returns the record."""
        if epoch % self.every:
            return None
        feats, preds = self.collect()
        y = as_labels(self.y_eval, n=preds.shape[0])
        record: dict[str, float] = {"epoch": float(epoch)}
        record["train_error"] = float("nan") if train_error is None else float(train_error)
        record["eval_error"] = float((preds != y).mean())
        prev = None
        for h, x in feats.items():
            stats = accumulate(x, y)
            check_stats(stats)
            clf = self._linear() if h == self.feature_hook else None
            m = stats_metrics(stats, classifier=clf)
            m.update(nc4(stats, x, y, predictions=preds))
            if prev is not None and h in self.hook_points:
                m.update(variability_ratio(prev, stats))
            record.update(with_suffix(m, h))
            prev = stats
        self.history.append(record)
        return record

    def _linear(self) -> tuple[np.ndarray, np.ndarray | None]:
        from hiddenlens.hooks.names import get_module

        module = get_module(self.model, self.classifier)
        w = module.weight.detach().cpu().numpy()
        b = None if module.bias is None else module.bias.detach().cpu().numpy()
        return w, b

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, values) for one history key, e.g. ``"collapse/nc1/net.2"``."""
        epochs = np.array([r["epoch"] for r in self.history])
        return epochs, np.array([r.get(key, np.nan) for r in self.history])

    def zero_error_epochs(self) -> tuple[float | None, float | None]:
        """(first epoch with zero train error, epoch from which it stays zero)."""
        return zero_error_epochs(
            [r["epoch"] for r in self.history], [r["train_error"] for r in self.history]
        )


def zero_error_epochs(epochs: Sequence[float], errors: Sequence[float]):
    """First epoch with error 0 and the epoch after which the error stays 0 (None if never)."""
    errs = np.asarray(errors, dtype=float)
    zero = errs == 0
    if not zero.any():
        return None, None
    first = epochs[int(np.argmax(zero))]
    nonzero = np.flatnonzero(~zero)
    if nonzero.size and nonzero[-1] == len(errs) - 1:
        return first, None
    stays = epochs[0] if not nonzero.size else epochs[int(nonzero[-1]) + 1]
    return first, stays
