"""Many small models trained at once, for controlled shortcut studies.

Hermann et al. ("On the Foundations of Shortcut Learning", ICLR 2024) compare linear models,
one-hidden-layer ReLU / Tanh MLPs and small CNNs over a grid of predictivity x availability
settings and seeds. Here every (setting, seed) pair is one slice of a leading "model"
dimension, so a whole sweep trains as one batched network: weights [M, ...], inputs
[M, n, ...], logits [M, n]. Full-batch training, so "converged" is well defined: the
relative change of the training loss over the last stretch of steps is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

ARCHS = ("linear", "relu", "tanh", "cnn")


class BatchedNet(nn.Module):
    """M independent binary classifiers evaluated together.

    arch "linear": x -> w.x + b; "relu"/"tanh": one hidden layer of ``hidden`` units;
    "cnn": 3x3 conv with stride 3 (``channels`` filters shared over the non-overlapping
    3x3 cells) -> ReLU -> linear.
    forward(x [M, n, *input_shape]) -> logits [M, n].
    """

    def __init__(
        self,
        n_models: int,
        input_shape: tuple[int, ...],
        arch: str = "relu",
        hidden: int = 64,
        channels: int = 4,
        seed: int = 0,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch={arch!r}: accepted {ARCHS}")
        if arch == "cnn" and len(input_shape) != 3:
            raise ValueError(f"arch='cnn' needs image inputs [C, H, W], got {input_shape}")
        self.arch, self.m, self.input_shape = arch, n_models, tuple(input_shape)
        gen = torch.Generator().manual_seed(seed)
        d = math.prod(input_shape)
        if arch == "cnn":
            c_in, hgt, wid = input_shape
            self.conv_w = self._uniform((n_models, c_in * 9, channels), c_in * 9, gen)
            self.conv_b = self._uniform((n_models, 1, channels), c_in * 9, gen)
            d = channels * (hgt // 3) * (wid // 3)
        if arch in ("relu", "tanh"):
            self.w1 = self._uniform((n_models, d, hidden), d, gen)
            self.b1 = self._uniform((n_models, 1, hidden), d, gen)
            d = hidden
        self.w = self._uniform((n_models, d), d, gen)
        self.b = self._uniform((n_models, 1), d, gen)

    @staticmethod
    def _uniform(shape, fan_in: int, gen) -> nn.Parameter:
        # PyTorch's default Linear/Conv initialisation bound 1/sqrt(fan_in)
        bound = 1.0 / math.sqrt(fan_in)
        return nn.Parameter((torch.rand(shape, generator=gen) * 2 - 1) * bound)

    def prepare(self, x) -> torch.Tensor:
        """Check x [M, n, *input_shape] and lay it out for ``forward(..., prepared=True)``.

        For the CNN this is im2col of the 3x3 cells ([M, n * cells, 9*c]), done once for a
        fixed training set: a grouped conv2d with M groups is far slower on CPU, and stride 3
        keeps im2col the size of the input (a stride-1 conv costs 9x the memory traffic).
        """
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() < 3 or x.shape[0] != self.m or tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; expected [{self.m}, n, *{self.input_shape}]"
            )
        m, n = x.shape[:2]
        if self.arch != "cnn":
            return x.reshape(m, n, -1)
        c_in, hgt, wid = self.input_shape
        cols = nn.functional.unfold(x.reshape(m * n, c_in, hgt, wid), 3, stride=3)
        return cols.reshape(m, n, c_in * 9, -1).transpose(2, 3).reshape(m, -1, c_in * 9)

    def features(self, x: torch.Tensor, prepared: bool = False) -> torch.Tensor:
        """Inputs of the last layer, [M, n, d_last]."""
        h = x if prepared else self.prepare(x)
        if self.arch == "cnn":
            _, hgt, wid = self.input_shape
            cells = (hgt // 3) * (wid // 3)
            h = torch.relu(torch.baddbmm(self.conv_b, h, self.conv_w))  # [M, n*cells, ch]
            return h.reshape(self.m, h.shape[1] // cells, -1)
        if self.arch in ("relu", "tanh"):
            act = torch.relu if self.arch == "relu" else torch.tanh
            h = act(torch.baddbmm(self.b1, h, self.w1))
        return h

    def forward(self, x: torch.Tensor, prepared: bool = False) -> torch.Tensor:
        """Logits [M, n]; ``prepared`` says x came from :meth:`prepare`."""
        h = self.features(x, prepared)
        return torch.bmm(h, self.w.unsqueeze(2)).squeeze(2) + self.b


@dataclass
class TrainResult:
    """loss: [steps, M] full-batch training loss; eval_steps: steps at which ``evals`` were
    taken; evals: list of whatever eval_fn returned; converged_rel_change: [M] relative loss
    change over the last ``tail`` fraction of steps; seconds: wall time; example_losses:
    [steps, n] per-example losses of the tracked model (or None)."""

    loss: np.ndarray
    eval_steps: list
    evals: list
    converged_rel_change: np.ndarray
    seconds: float
    example_losses: np.ndarray | None = None


def train_batched(
    net: BatchedNet,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    steps: int = 2000,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    eval_at=(),
    eval_fn=None,
    tail: float = 0.1,
    track_model: int | None = None,
) -> TrainResult:
    """Full-batch training on the mean logistic loss of every model. x [M, n, ...], y [M, n].

    ``optimizer`` "sgd" (heavy-ball ``momentum``; keeps the gradient's per-feature scale, so
    a more available feature is learned faster, as in the NTK account) or "adam" (rescales
    every coordinate, which evens out early feature learning). ``weight_decay`` is an L2
    penalty, which gives the logistic loss a minimum to converge to on separable data.

    ``eval_fn(net, step)`` is called before each step in ``eval_at`` and after the last step,
    under no_grad; its return values are collected in ``TrainResult.evals``.
    ``track_model``: record that model's per-example losses at every step
    (``TrainResult.example_losses`` [steps, n], for opposing-signal detection).
    """
    import time

    yt = torch.as_tensor(y, dtype=torch.float32)
    if tuple(yt.shape) != tuple(np.shape(x)[:2]):
        raise ValueError(f"y has shape {tuple(yt.shape)}; expected {tuple(np.shape(x)[:2])}")
    xt = net.prepare(x)
    if optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer={optimizer!r}: accepted 'sgd', 'adam'")
    losses, ev_steps, evals = [], [], []
    eval_at = {int(s) for s in eval_at}
    tracked: list[np.ndarray] = []
    t0 = time.perf_counter()
    for step in range(steps):
        if eval_fn is not None and step in eval_at:
            with torch.no_grad():
                ev_steps.append(step)
                evals.append(eval_fn(net, step))
        opt.zero_grad(set_to_none=True)
        per_example = nn.functional.binary_cross_entropy_with_logits(
            net(xt, prepared=True), yt, reduction="none"
        )
        if track_model is not None:
            tracked.append(per_example[track_model].detach().numpy().copy())
        per_model = per_example.mean(dim=1)
        # sum over models: each model's gradient is that of its own mean loss
        per_model.sum().backward()
        opt.step()
        losses.append(per_model.detach().numpy().copy())
    if eval_fn is not None:
        with torch.no_grad():
            ev_steps.append(steps)
            evals.append(eval_fn(net, steps))
    loss = np.stack(losses)
    k = max(1, int(tail * steps))
    rel = np.abs(loss[-k - 1] - loss[-1]) / np.maximum(loss[-k - 1], 1e-12)
    ex = np.stack(tracked) if tracked else None
    return TrainResult(loss, ev_steps, evals, rel, time.perf_counter() - t0, ex)


def predict_batched(net: BatchedNet, x, batch: int = 4096) -> np.ndarray:
    """0/1 decisions [M, n] of every model on its own inputs x [M, n, ...]."""
    xt = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        out = [net(xt[:, i : i + batch]) > 0 for i in range(0, max(xt.shape[1], 1), batch)]
    return torch.cat(out, dim=1).numpy().astype(np.int64)
