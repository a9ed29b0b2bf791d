"""Worker for the data-parallel test (spawned twice with gloo)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from hiddenlens.sae import SAEConfig, TrainConfig, train
from tests.sae.fakes import FakeStore, planted_data

CFG = SAEConfig(d_in=16, d_sae=48, architecture="topk", k=2)


def train_cfg() -> TrainConfig:
    return TrainConfig(
        total_tokens=64 * 12, batch_size=64, lr=3e-3, dead_tokens=128, lr_warmup_steps=2
    )


def make_store() -> FakeStore:
    x, _ = planted_data(n=1024, d=16, m=32, k_true=2, seed=4)
    return FakeStore({"h": x})


def worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        sae = train(make_store(), "h", CFG, train_cfg())
        if rank == 0:
            state = {k: v.contiguous() for k, v in sae.state_dict().items()}
            state["density"] = sae.feature_density_
            save_file(state, out_file)
    finally:
        dist.destroy_process_group()
