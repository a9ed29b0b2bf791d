"""Unconstrained-features model (UFM) simulator.

Mixon, Parshall & Pi ("Neural collapse with unconstrained features", 2020) and Zhu et al.
("A Geometric Analysis of Neural Collapse with Unconstrained Features", NeurIPS 2021): treat
the last-layer features H as free variables and train them jointly with a linear classifier
(W, b) under weight decay. Every global minimiser is an exact simplex-ETF collapse, so
plain gradient descent drives NC1 → 0, NC2 → 0 and NC3 → 0.

Objective (mean over the N = C·n samples):
    L = 1/N Σ_i [ℓ(W h_i + b, y_i) + λ_H/2 ‖h_i‖²] + λ_W/2 ‖W‖²_F + λ_b/2 ‖b‖²
with ℓ cross-entropy or squared error against one-hot targets. Gradients are written out
by hand (numpy) because the problem is tiny and this keeps it dependency-free and fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hiddenlens.collapse.metrics import stats_metrics
from hiddenlens.collapse.stats import accumulate


@dataclass
class UFMConfig:
    """Settings of one UFM run.

    n_classes: C; d: feature width (≥ C − 1 for an ETF to exist); n_per_class: samples per
    class; loss: "ce" or "mse"; lam_h, lam_w, lam_b: weight decays; lr: step size of plain
    gradient descent (the feature step is scaled by N so each h_i moves at the rate of its
    own loss); steps: iterations; log_every: metrics interval; seed: initialisation.
    """

    n_classes: int = 4
    d: int = 8
    n_per_class: int = 5
    loss: str = "ce"
    lam_h: float = 5e-3
    lam_w: float = 5e-3
    lam_b: float = 1e-2
    lr: float = 0.5
    steps: int = 3000
    log_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for k in ("n_classes", "d", "n_per_class", "steps", "log_every", "seed"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{k} must be an int, got {v!r}")
        for k in ("lam_h", "lam_w", "lam_b", "lr"):
            if not math.isfinite(getattr(self, k)):
                raise ValueError(f"{k} must be a finite number, got {getattr(self, k)!r}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if self.d < self.n_classes - 1:
            raise ValueError(f"d must be >= n_classes - 1 = {self.n_classes - 1}, got {self.d}")
        if self.n_per_class < 2:
            raise ValueError(f"n_per_class must be >= 2, got {self.n_per_class}")
        if self.loss not in ("ce", "mse"):
            raise ValueError(f"loss must be 'ce' or 'mse', got {self.loss!r}")
        for k in ("lam_h", "lam_w", "lam_b"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.lr <= 0 or self.steps < 1 or self.log_every < 1:
            raise ValueError("lr must be > 0, steps and log_every >= 1")


@dataclass
class UFMResult:
    """Final H [N, d], W [C, d], b [C], labels [N]; history: list of (step, metrics)."""

    features: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    labels: np.ndarray
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def curve(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric over the run."""
        steps = np.array([s for s, _ in self.history])
        return steps, np.array([m[key] for _, m in self.history])


def _loss_grad(z: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """∂(1/N Σ ℓ)/∂z for logits z [N, C]."""
    n, c = z.shape
    onehot = np.eye(c)[y]
    if loss == "ce":
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return (p - onehot) / n
    return (z - onehot) / n  # ℓ = ½‖z − e_y‖²


def simulate_ufm(config: UFMConfig | None = None) -> UFMResult:
    """Run gradient descent on the UFM and record NC metrics every ``log_every`` steps."""
    cfg = config or UFMConfig()
    rng = np.random.default_rng(cfg.seed)
    c, n = cfg.n_classes, cfg.n_classes * cfg.n_per_class
    y = np.repeat(np.arange(c), cfg.n_per_class)
    h = rng.standard_normal((n, cfg.d))
    w = rng.standard_normal((c, cfg.d)) / np.sqrt(cfg.d)
    b = np.zeros(c)
    result = UFMResult(h, w, b, y)
    for step in range(cfg.steps + 1):
        if step % cfg.log_every == 0 or step == cfg.steps:
            result.history.append((step, _record(h, w, b, y)))
        if step == cfg.steps:
            break
        g = _loss_grad(h @ w.T + b, y, cfg.loss)  # [N, C]
        grad_h = g @ w + cfg.lam_h * h / n
        grad_w = g.T @ h + cfg.lam_w * w
        grad_b = g.sum(0) + cfg.lam_b * b
        h = h - cfg.lr * n * grad_h
        w = w - cfg.lr * grad_w
        b = b - cfg.lr * grad_b
    result.features, result.weight, result.bias = h, w, b
    return result


def _record(h: np.ndarray, w: np.ndarray, b: np.ndarray, y: np.ndarray) -> dict[str, float]:
    stats = accumulate(h, y)
    out = stats_metrics(stats, classifier=(w, b))
    out["train_acc"] = float((np.argmax(h @ w.T + b, 1) == y).mean())
    return out
