"""Recording and summarising information planes for a batch of models (see run.py)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr

from hiddenlens.hooks import capture
from hiddenlens.info.binning import plane_binning
from hiddenlens.info.plane import PlaneHistory, layer_record
from hiddenlens.info.rank import local_rank


class Recorder:
    """Per-model PlaneHistory objects filled at record epochs from one batched forward pass.

    tanh models: fixed bins on [-1, 1] ("binning") and KDE; ReLU models: bins rescaled to
    each epoch's range ("binning_rescaled") and KDE now, fixed global bins after training
    (``finish``), from activations kept for that purpose.
    """

    def __init__(
        self,
        model,
        specs,
        x,
        y,
        train_idx,
        *,
        bins,
        noise_var,
        kde_rows,
        seed=0,
        rank_models=(),
        rank_inputs=64,
    ):
        self.model, self.specs, self.x, self.y = model, specs, x, y.numpy()
        self.train_idx = train_idx
        self.hooks = [f"layers.{i}" for i in range(len(model.layers) - 1)]
        self.hist = [PlaneHistory(layers=list(self.hooks)) for _ in specs]
        self.bins, self.noise_var = bins, noise_var
        n = len(y)
        self.kde_rows = (
            np.random.default_rng(seed).choice(n, kde_rows, replace=False) if kde_rows < n else None
        )
        self.relu_acts: dict[tuple[int, int], list[np.ndarray]] = {}
        self.rank_models, self.rank_inputs = tuple(rank_models), rank_inputs
        self.rank: dict[int, list[dict]] = {i: [] for i in self.rank_models}

    def __call__(self, epoch: int) -> None:
        m = len(self.specs)
        with torch.no_grad(), capture(self.model, self.hooks, stop_early=False) as cap:
            logits = cap.run(self.x.expand(m, -1, -1))
        correct = (logits.argmax(-1).numpy() == self.y[None]).astype(float)  # [M, N]
        mask = np.zeros_like(correct, dtype=bool)
        mask[np.arange(m)[:, None], self.train_idx.numpy()] = True
        for i, spec in enumerate(self.specs):
            gap = correct[i][mask[i]].mean() - correct[i][~mask[i]].mean()
            extra = {
                "train_acc": correct[i][mask[i]].mean(),
                "test_acc": correct[i][~mask[i]].mean(),
                "gap": gap,
            }
            for j, h in enumerate(self.hooks):
                t = cap[h][i].double().numpy()
                ests = (
                    ("binning", "kde") if spec.activation == "tanh" else ("binning_rescaled", "kde")
                )
                for est in ests:
                    rec = layer_record(
                        t,
                        self.y,
                        est,
                        bins=self.bins,
                        value_range=(-1.0, 1.0),
                        noise_var=self.noise_var,
                        kde_rows=self.kde_rows,
                    )
                    self.hist[i].records.append(
                        {"epoch": epoch, "layer": h, "estimator": est, **rec, **extra}
                    )
                if spec.activation == "relu":
                    self.relu_acts.setdefault((i, j), []).append(t.astype(np.float32))
        for i in self.rank_models:
            self.rank[i].append(
                {
                    "epoch": epoch,
                    **local_rank(
                        extract(self.model, i),
                        self.x[: self.rank_inputs],
                        [str(2 * k + 1) for k in range(len(self.hooks))],
                    ),
                }
            )

    def finish(self) -> None:
        """ReLU: bins over [0, max over all recorded epochs] of each layer (fixed global)."""
        epochs = self.hist[0].epochs
        for (i, j), acts in self.relu_acts.items():
            hi = max(float(a.max()) for a in acts)
            for e, t in zip(epochs, acts):
                ixt, ity = plane_binning(
                    t, self.y, bins=self.bins, value_range=(0.0, hi if hi > 0 else 1.0)
                )
                self.hist[i].records.append(
                    {
                        "epoch": int(e),
                        "layer": self.hooks[j],
                        "estimator": "binning",
                        "ixt": ixt,
                        "ity": ity,
                    }
                )
        self.relu_acts.clear()


def extract(model, i: int) -> torch.nn.Sequential:
    """Model ``i`` of a BatchedMLP as a plain nn.Sequential (Linear, act, Linear, ...)."""
    mods = []
    for layer in model.layers:
        lin = torch.nn.Linear(layer.w.shape[1], layer.w.shape[2])
        with torch.no_grad():
            lin.weight.copy_(layer.w[i].T)
            lin.bias.copy_(layer.b[i, 0])
        mods.append(lin)
        if layer.is_tanh.numel():
            mods.append(torch.nn.Tanh() if bool(layer.is_tanh[i]) else torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def fall(hist: PlaneHistory, estimator: str, layer: str) -> float:
    """Peak minus final I(X;T) of one layer (bits): the size of the "compression"."""
    ixt = hist.array("ixt", estimator)[:, hist.layers.index(layer)]
    return float(np.nanmax(ixt) - ixt[-1])


def after_peak_corr(hist: PlaneHistory, estimator: str, layer: str, key: str) -> float:
    """Spearman correlation of I(X;T) with a diagnostic (saturation, max_abs) after the peak."""
    j = hist.layers.index(layer)
    ixt = hist.array("ixt", estimator)[:, j]
    diag = hist.array(key, "kde")[:, j]  # diagnostics are stored with every KDE record
    p = int(np.nanargmax(ixt))
    if len(ixt) - p < 4 or np.all(diag[p:] == diag[p]) or np.all(ixt[p:] == ixt[p]):
        return float("nan")
    return float(spearmanr(ixt[p:], diag[p:]).statistic)
