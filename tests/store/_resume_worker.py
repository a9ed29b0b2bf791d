"""Subprocess for the resume test: caches a deterministic model, slowly unless told not to.

Usage: python _resume_worker.py OUT_DIR SLEEP_SECONDS [hold]

``hold``: the run stops for good at its last batch (it waits to be killed), so a parent
that kills it once some shards are recorded always finds it still running, however late
a loaded machine lets the parent look (no race between the kill and the run's end).
"""

from __future__ import annotations

import sys
import time

import torch
from torch import nn

N_BATCHES = 40  # 400 rows in batches of 10


class Slow(nn.Module):
    """Identity that sleeps, so the parent can kill the run mid-way (no parameters);
    with ``hold`` it blocks at the last batch until killed (the run cannot end first)."""

    def __init__(self, seconds: float, hold: bool = False):
        super().__init__()
        self.seconds, self.hold, self.calls = seconds, hold, 0

    def forward(self, x):
        self.calls += 1
        while self.hold and self.calls >= N_BATCHES:  # the last batch's rows never arrive
            time.sleep(1)
        time.sleep(self.seconds)
        return x


def build(seconds: float, hold: bool = False):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), Slow(seconds, hold), nn.Linear(32, 32))
    data = torch.randn(400, 8, generator=torch.Generator().manual_seed(3))
    return model, data, (torch.arange(400) % 7).numpy()


def run(out_dir: str, seconds: float, hold: bool = False):
    from hiddenlens.store import cache_activations

    model, data, labels = build(seconds, hold)
    return cache_activations(
        model, data, ["1", "3"], out_dir, batch_size=10, labels=labels, shard_size_mb=0.01
    )


if __name__ == "__main__":
    run(sys.argv[1], float(sys.argv[2]), sys.argv[3:] == ["hold"])
