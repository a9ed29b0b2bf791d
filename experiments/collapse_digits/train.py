"""Data, models and training recipes for the digits neural-collapse experiment.

Papyan, Han & Donoho (PNAS 2020) train well past zero training error ("terminal phase")
and watch NC1–NC4 fall. Two recipes are contrasted: a plain cross-entropy MLP with light
weight decay, and Linear→BatchNorm→ReLU blocks with heavier weight decay and SGD with
momentum and step decay (the recipe the paper's nets share), plus an MSE-loss variant
(Han, Papyan & Donoho, "Neural collapse under MSE loss", ICLR 2022).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hiddenlens.collapse import CollapseTracker, mixup_batch


@dataclass
class Recipe:
    """One training run. arch: "mlp" or "cnn"; bn: BatchNorm after each linear/conv;
    loss: "ce" or "mse"; lr drops ×0.1 at each fraction of ``epochs`` in ``milestones``."""

    name: str
    arch: str = "mlp"
    depth: int = 4
    width: int = 256
    bn: bool = True
    loss: str = "ce"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-3
    milestones: tuple[float, ...] = (1 / 3, 2 / 3)
    epochs: int = 300
    batch_size: int = 128
    minority: tuple[int, ...] = ()
    minority_keep: float = 0.1
    seed: int = 0
    mixup_alpha: float = 0.0  # > 0: train on mixup batches, λ ~ Beta(α, α) (Zhang et al. 2018)

    def __post_init__(self) -> None:
        if not (self.mixup_alpha >= 0 and np.isfinite(self.mixup_alpha)):
            raise ValueError(f"mixup_alpha must be >= 0 (0 = no mixup), got {self.mixup_alpha}")
        if self.arch not in ("mlp", "cnn") or self.loss not in ("ce", "mse"):
            raise ValueError(f"arch must be mlp/cnn and loss ce/mse, got {self.arch}/{self.loss}")
        if self.epochs < 1 or self.depth < 1 or not 0 < self.minority_keep <= 1:
            raise ValueError("epochs, depth >= 1 and 0 < minority_keep <= 1 required")


@dataclass
class RunResult:
    recipe: Recipe
    model: nn.Module
    tracker: CollapseTracker
    hooks: list[str]
    train_error: list[float]
    test_acc: float
    counts: np.ndarray
    seconds: float


def load_data(seed: int = 0):
    """sklearn digits scaled to [0, 1]: (x_train, y_train, x_test, y_test), 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te


def subsample_minority(x, y, minority, keep, seed):
    """Keep a fraction ``keep`` of the rows of each class in ``minority``."""
    rng = np.random.default_rng(seed)
    mask = np.ones(len(y), dtype=bool)
    for c in minority:
        idx = np.flatnonzero(y == c)
        drop = rng.permutation(idx)[max(1, int(round(keep * idx.size))) :]
        mask[drop] = False
    return x[mask], y[mask]


class MLP(nn.Module):
    """``blocks.i`` = Linear → [BatchNorm] → ReLU; ``fc`` the linear classifier."""

    def __init__(self, d_in: int, width: int, depth: int, bn: bool, n_classes: int = 10):
        super().__init__()
        dims = [d_in] + [width] * depth
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.BatchNorm1d(b) if bn else nn.Identity(), nn.ReLU())
            for a, b in zip(dims[:-1], dims[1:])
        )
        self.fc = nn.Linear(width, n_classes)

    def forward(self, x):
        x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        return self.fc(x)


class CNN(nn.Module):
    """Two conv blocks on the 8×8 image, then MLP blocks; same hook naming as MLP."""

    def __init__(self, width: int, depth: int, bn: bool, n_classes: int = 10):
        super().__init__()

        def norm2d(c):
            return nn.BatchNorm2d(c) if bn else nn.Identity()

        convs = [
            nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), norm2d(16), nn.ReLU()),
            nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, stride=2), norm2d(32), nn.ReLU()),
        ]
        head = MLP(32 * 16, width, max(depth - 2, 1), bn, n_classes)
        self.blocks = nn.ModuleList([*convs, nn.Flatten(), *head.blocks])
        self.fc = head.fc

    def forward(self, x):
        x = x.reshape(-1, 1, 8, 8)
        for block in self.blocks:
            x = block(x)
        return self.fc(x)


def build_model(r: Recipe) -> tuple[nn.Module, list[str]]:
    """The model and the hook points to track, in network order (input first)."""
    if r.arch == "mlp":
        model = MLP(64, r.width, r.depth, r.bn)
        inner = [f"blocks.{i}" for i in range(r.depth - 1)]
    else:
        model = CNN(r.width, r.depth, r.bn)
        n = len(model.blocks)
        inner = [f"blocks.{i}" for i in range(n - 1) if not isinstance(model.blocks[i], nn.Flatten)]
    return model, ["blocks.0:input", *inner, "fc:input"]


def _loss(r: Recipe, logits, y):
    """CE or per-sample squared error against class ids [B] or soft labels [B, K] (mixup)."""
    if r.loss == "ce":
        return nn.functional.cross_entropy(logits, y)
    target = y if y.ndim == 2 else nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
    return ((logits - target) ** 2).sum(1).mean()  # squared error per sample


def train(r: Recipe, data, *, track_every: int = 1) -> RunResult:
    """Train ``r`` on the digits split and track collapse on the (fixed) training set."""
    x_tr, y_tr, x_te, y_te = data
    if r.minority:
        x_tr, y_tr = subsample_minority(x_tr, y_tr, r.minority, r.minority_keep, r.seed)
    torch.manual_seed(r.seed)
    model, hooks = build_model(r)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr).long()
    tracker = CollapseTracker(model, hooks, xt, y_tr, classifier="fc")
    opt = torch.optim.SGD(
        model.parameters(), lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay
    )
    steps = [int(m * r.epochs) for m in r.milestones]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, steps, gamma=0.1)
    gen = torch.Generator().manual_seed(r.seed)
    rng = np.random.default_rng(r.seed)
    errors, t0 = [], time.perf_counter()
    for epoch in range(r.epochs):
        model.train()
        for idx in torch.randperm(len(yt), generator=gen).split(r.batch_size):
            if len(idx) < 2:  # BatchNorm needs two rows
                continue
            xb, yb = xt[idx], yt[idx]
            if r.mixup_alpha > 0:
                xb, yb, _ = mixup_batch(xb, yb, 10, alpha=r.mixup_alpha, rng=rng)
            loss = _loss(r, model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        errors.append(_error(model, xt, yt))
        # the first zero-error epoch and the epoch from which the error stays zero are both
        # starts of a zero-error streak: measuring at every such start makes them exact
        streak_start = errors[-1] == 0 and (epoch == 0 or errors[-2] > 0)
        if streak_start or epoch % track_every == 0 or epoch == r.epochs - 1:
            tracker.on_epoch_end(epoch, train_error=errors[-1])
    test_acc = 1.0 - _error(model, torch.from_numpy(x_te), torch.from_numpy(y_te).long())
    counts = np.bincount(y_tr, minlength=10)
    return RunResult(r, model, tracker, hooks, errors, test_acc, counts, time.perf_counter() - t0)


@torch.no_grad()
def _error(model: nn.Module, x, y) -> float:
    was = model.training
    model.eval()
    err = float((model(x).argmax(1) != y).float().mean())
    model.train(was)
    return err
