"""Many small MLPs trained at once as one batched model (weights [M, in, out], torch.bmm).

Every model has its own initialisation, its own train/test split and its own minibatch
order; Adam is elementwise, so stacking the models changes nothing about each one's
trajectory while making the 2-core machine run one big op instead of M small ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class Layer(nn.Module):
    """One batched dense layer with a per-model activation (tanh or ReLU), hookable by name."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, act: torch.Tensor | None):
        super().__init__()
        self.w, self.b = nn.Parameter(w), nn.Parameter(b)
        self.register_buffer("is_tanh", act if act is not None else torch.zeros(0))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [M, N, in] -> [M, N, out]
        z = torch.baddbmm(self.b, h, self.w)
        if self.is_tanh.numel() == 0:  # output layer: logits
            return z
        return torch.where(self.is_tanh, torch.tanh(z), torch.relu(z))


def _init(m: int, fan_in: int, fan_out: int, scheme: str, gen: torch.Generator):
    if scheme == "saxe":  # truncated normal (±2 std), std 1/sqrt(fan_out), zero bias
        w = torch.empty(fan_in, fan_out)
        nn.init.trunc_normal_(
            w,
            std=1 / math.sqrt(fan_out),
            a=-2 / math.sqrt(fan_out),
            b=2 / math.sqrt(fan_out),
            generator=gen,
        )
        return w, torch.zeros(1, fan_out)
    bound = 1 / math.sqrt(fan_in)  # PyTorch nn.Linear default (kaiming_uniform a=sqrt(5))
    w = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound
    return w, (torch.rand(1, fan_out, generator=gen) * 2 - 1) * bound


@dataclass
class ModelSpec:
    activation: str  # "tanh" | "relu"
    init: str  # "saxe" | "default"
    seed: int

    @property
    def name(self) -> str:
        return f"{self.activation}-{self.init}-s{self.seed}"


class BatchedMLP(nn.Module):
    """M MLPs with widths ``dims`` (input ... output); hidden layers are ``layers.0..L-2``."""

    def __init__(self, dims: list[int], specs: list[ModelSpec]):
        super().__init__()
        layers = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            ws, bs = [], []
            for s in specs:
                g = torch.Generator().manual_seed(1000 * s.seed + i)
                w, bias = _init(len(specs), a, b, s.init, g)
                ws.append(w)
                bs.append(bias)
            last = i == len(dims) - 2
            act = (
                None
                if last
                else torch.tensor([s.activation == "tanh" for s in specs]).view(-1, 1, 1)
            )
            layers.append(Layer(torch.stack(ws), torch.stack(bs), act))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [M, N, d_in] -> [M, N, d_out]
        for layer in self.layers:
            x = layer(x)
        return x


def train_batched(
    model: BatchedMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    train_idx: torch.Tensor,
    *,
    epochs: int,
    record_epochs: set[int],
    on_record,
    lr: float = 4e-4,
    batch_size: int = 256,
    seed: int = 0,
) -> None:
    """Adam on each model's own train split; calls ``on_record(epoch)`` at record epochs.

    x [N, d], y [N] shared data; train_idx [M, n_train] per-model training rows.
    """
    m, n_train = train_idx.shape
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    gen = torch.Generator().manual_seed(seed)
    ar = torch.arange(m)[:, None]
    if 0 in record_epochs:
        on_record(0)
    for epoch in range(1, epochs + 1):
        order = train_idx[ar, torch.argsort(torch.rand(m, n_train, generator=gen), dim=1)]
        for s in range(0, n_train, batch_size):
            idx = order[:, s : s + batch_size]  # [M, B]
            logits = model(x[idx])  # [M, B, C]
            # mean over each model's batch, summed over models: independent gradients
            loss = nn.functional.cross_entropy(
                logits.flatten(0, 1), y[idx].flatten(), reduction="sum"
            )
            opt.zero_grad(set_to_none=True)
            (loss / idx.shape[1]).backward()
            opt.step()
        if epoch in record_epochs:
            on_record(epoch)


def log_epochs(epochs: int, n: int) -> list[int]:
    """About n record epochs, log-spaced from 1 to ``epochs``, plus epoch 0."""
    pts = np.unique(np.round(np.logspace(0, np.log10(max(epochs, 1)), n)).astype(int))
    return [0, *[int(p) for p in pts if p <= epochs]]
