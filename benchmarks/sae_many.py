"""N SAEs in one pass (``train_many``) vs N separate ``train`` runs, on one on-disk store.

Caches synthetic rows of two hook points to a temporary store, then trains a grid of TopK
SAEs (both hooks x k in {16, 32}) once with ``train_many`` (every batch read and shuffled
once for all of them) and once as separate runs. Prints both wall times and their ratio,
and checks that the SAEs are identical (they must be: same seeds, same batches).

    .venv/bin/python benchmarks/sae_many.py [--rows 65536] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from hiddenlens.sae import SAEConfig, TrainConfig, train
    from hiddenlens.sae.many import train_many
    from hiddenlens.store import cache_activations

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256))
    with tempfile.TemporaryDirectory() as tmp:
        store = cache_activations(model, torch.randn(args.rows, 64), ["0", "2"], Path(tmp) / "s",
                                  batch_size=4096)  # fmt: skip
        tc = TrainConfig(total_tokens=2048 * args.steps, batch_size=2048, checkpoint_every=0)
        specs = [(h, SAEConfig(d_in=256, d_sae=2048, architecture="topk", k=k), tc)
                 for h in ("0", "2") for k in (16, 32)]  # fmt: skip
        t = time.perf_counter()
        many = train_many(store, specs)
        t_many = time.perf_counter() - t
        t = time.perf_counter()
        alone = [train(store, h, c, tcfg) for h, c, tcfg in specs]
        t_alone = time.perf_counter() - t
    same = all(
        torch.equal(a, b)
        for m, s in zip(many, alone)
        for a, b in zip(m.state_dict().values(), s.state_dict().values())
    )
    print(f"{len(specs)} SAEs, {args.steps} steps of 2048 rows, threads={args.threads}")
    print(f"train_many (one pass)   : {t_many:8.2f} s")
    print(f"separate train runs     : {t_alone:8.2f} s")
    print(f"separate / one pass     : {t_alone / t_many:8.2f} x   identical SAEs: {same}")


if __name__ == "__main__":
    main()
