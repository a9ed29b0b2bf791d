"""Subprocess for the resume test: caches a deterministic model, slowly unless told not to.

Usage: python _resume_worker.py OUT_DIR SLEEP_SECONDS
"""

from __future__ import annotations

import sys
import time

import torch
from torch import nn


class Slow(nn.Module):
    """Identity that sleeps, so the parent can kill the run mid-way (no parameters)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


def build(seconds: float):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), Slow(seconds), nn.Linear(32, 32))
    data = torch.randn(400, 8, generator=torch.Generator().manual_seed(3))
    return model, data, (torch.arange(400) % 7).numpy()


def run(out_dir: str, seconds: float):
    from hiddenlens.store import cache_activations

    model, data, labels = build(seconds)
    return cache_activations(
        model, data, ["1", "3"], out_dir, batch_size=10, labels=labels, shard_size_mb=0.01
    )


if __name__ == "__main__":
    run(sys.argv[1], float(sys.argv[2]))
