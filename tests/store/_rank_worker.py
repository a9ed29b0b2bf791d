"""One rank of the torchrun-style caching test: RANK/WORLD_SIZE come from the environment."""

import sys

import torch
from torch import nn

from hiddenlens.store.distributed import cache_activations_ranked

if __name__ == "__main__":
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 5))
    x = torch.randn(90, 6, generator=torch.Generator().manual_seed(1))
    cache_activations_ranked(
        model, x, ["1", "2"], sys.argv[1], batch_size=10, shard_size_mb=0.001, timeout_s=120
    )
