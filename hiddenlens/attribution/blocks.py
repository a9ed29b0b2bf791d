"""BlockMNIST-style data from scikit-learn digits, and PGD adversarial examples.

Shah, Jain & Netrapalli, "Do Input Gradients Highlight Discriminative Features?" (NeurIPS
2021) build BlockMNIST: each image stacks two blocks vertically, one holding an MNIST digit
(the *signal*, which decides the label) and one holding a fixed *null* patch identical for
every class; which block is which is random. An attribution method should point at the
signal block. Here the digits are scikit-learn's 8x8 digits (scaled to [0, 1]) and images
are 16x8; the underlying digit images are split between train and test so no test digit is
seen in training.

PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", 2018):
projected gradient ascent on the loss inside an L2 or L-infinity ball, used for adversarial
training of the robust model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BlockData", "make_block_digits", "null_patch", "pgd_attack"]


@dataclass
class BlockData:
    """x: [N, 1, 16, 8] float32 in [0, 1]; y: [N] class index; signal_block: [N] 0 (top) / 1 (bottom)."""

    x: np.ndarray
    y: np.ndarray
    signal_block: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def null_patch(size: int = 8) -> np.ndarray:
    """The class-independent null pattern: a hollow square of full intensity."""
    p = np.zeros((size, size), dtype=np.float32)
    p[1:-1, 1] = p[1:-1, -2] = p[1, 1:-1] = p[-2, 1:-1] = 1.0
    return p


def _compose(digits: np.ndarray, rng: np.random.Generator, copies: int, noise: float):
    n = len(digits)
    idx = np.tile(np.arange(n), copies)
    block = rng.integers(0, 2, size=idx.size)
    x = np.zeros((idx.size, 1, 16, 8), dtype=np.float32)
    patch = null_patch()
    for i, (j, b) in enumerate(zip(idx, block)):
        x[i, 0, 8 * b : 8 * b + 8] = digits[j]
        x[i, 0, 8 * (1 - b) : 8 * (1 - b) + 8] = patch
    if noise:
        x = np.clip(x + noise * rng.standard_normal(x.shape).astype(np.float32), 0, 1)
    return x, idx, block


def make_block_digits(
    classes: Sequence[int] = (0, 1),
    *,
    copies: int = 4,
    test_size: float = 0.3,
    noise: float = 0.0,
    seed: int = 0,
) -> tuple[BlockData, BlockData]:
    """(train, test) block datasets. Each digit image appears ``copies`` times with random block
    order; labels are the position of the digit's class in ``classes``."""
    from sklearn.datasets import load_digits

    if len(set(classes)) < 2 or not all(0 <= c <= 9 for c in classes):
        raise ValueError(f"classes must be >= 2 distinct digits in 0..9, got {tuple(classes)}")
    if not 0 < test_size < 1 or copies < 1:
        raise ValueError(f"need 0 < test_size < 1 and copies >= 1, got {test_size}, {copies}")
    digits = load_digits()
    keep = np.isin(digits.target, classes)
    images = (digits.images[keep] / 16.0).astype(np.float32)
    labels = np.searchsorted(np.sort(classes), digits.target[keep])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(images))
    n_test = int(round(test_size * len(images)))
    out = []
    for part in (perm[n_test:], perm[:n_test]):
        x, idx, block = _compose(images[part], rng, copies, noise)
        out.append(BlockData(x, labels[part][idx], block))
    return out[0], out[1]


def pgd_attack(
    model,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float | None = None,
    steps: int = 10,
    norm: str = "l2",
    clamp: tuple[float, float] | None = (0.0, 1.0),
    random_start: bool = True,
    seed: int | None = None,
) -> Tensor:
    """Adversarial examples maximising cross-entropy within ||delta|| <= eps ("l2" or "linf").

    x: [N, ...] inputs, y: [N] labels. alpha defaults to 2.5 * eps / steps.
    """
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm={norm!r}; accepted: 'l2', 'linf'")
    if eps < 0 or steps < 1:
        raise ValueError(f"eps must be >= 0 and steps >= 1, got eps={eps}, steps={steps}")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    x = x.detach()
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    delta = torch.zeros_like(x)
    if random_start and eps > 0:
        delta = torch.rand(x.shape, generator=gen) * 2 - 1
        delta = _project(delta * eps, eps, norm)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for _ in range(steps):
            delta.requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model(x + delta), y)
                (g,) = torch.autograd.grad(loss, [delta])
            with torch.no_grad():
                if norm == "linf":
                    step = g.sign()
                else:
                    step = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(
                        -1, *[1] * (x.ndim - 1)
                    )
                delta = _project(delta + alpha * step, eps, norm)
                if clamp is not None:
                    delta = (x + delta).clamp(*clamp) - x
    finally:
        model.train(was_training)
    return (x + delta).detach()


def _project(delta: Tensor, eps: float, norm: str) -> Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    norms = delta.flatten(1).norm(dim=1).view(-1, *[1] * (delta.ndim - 1))
    return delta * (eps / norms.clamp_min(1e-12)).clamp(max=1.0)
