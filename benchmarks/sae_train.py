"""TopK SAE training speed and quality: hiddenlens vs sae-lens, side by side in one run.

Same activations (synthetic sparse data, or a store hook with --store/--hook), TopK with
d_in 384, d_sae 6144, k 32, batch 4096, Adam. Prints:
  * tokens/s of a full hiddenlens training step vs sae-lens's TopKTrainingSAE with its own
    optimizer step (forward, firing stats, backward, grad clipping, Adam), and the ratio;
  * the hiddenlens step time over the dense encoder matmul alone (the floor; target <= 2x);
  * FVU on held-out rows after the same number of training tokens for both.

    .venv/bin/python benchmarks/sae_train.py [--steps 12] [--threads 1]

Threads default to 1: on a shared 2-core box, OpenMP synchronisation between two threads
dominates every small op when other processes compete for the cores (measured: a 1 ms op
takes ~30 ms), which says nothing about either library. Pass --threads to change it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

D_IN, D_SAE, K, BATCH = 384, 6144, 32, 4096


def synthetic(n: int, seed: int = 0) -> torch.Tensor:
    """Sparse non-negative combinations of 12k random unit directions, plus a mean."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(12_000, D_IN, generator=g)
    feats /= feats.norm(dim=1, keepdim=True)
    idx = torch.randint(0, feats.shape[0], (n, 24), generator=g)
    coef = torch.rand(n, 24, generator=g) * 2
    x = torch.nn.functional.embedding_bag(
        idx.flatten(),
        feats,
        per_sample_weights=coef.flatten(),
        mode="sum",
        offsets=torch.arange(0, n * 24, 24),
    )
    return x + 0.3 * torch.randn(D_IN, generator=g) + 0.05 * torch.randn(n, D_IN, generator=g)


def from_store(path: str, hook: str, n: int) -> torch.Tensor:
    from hiddenlens.store import ActivationStore

    store = ActivationStore.open(path)
    return torch.from_numpy(np.asarray(store.rows(hook, 0, n), dtype=np.float32))


def hiddenlens_trainer(lr: float):
    from hiddenlens.sae import SAEConfig, build_sae
    from hiddenlens.sae.optim import Adam

    sae = build_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=K), seed=0).train()
    opt = Adam(sae.parameters(), lr=lr)

    def step(x: torch.Tensor) -> None:
        out = sae(x, coefs={"aux": 1 / 32}, dead_mask=None)
        opt.zero_grad()
        out.losses["loss"].backward()
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()

    return sae, step, lambda x: sae.reconstruct(x)


def saelens_trainer(lr: float):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    state = {"n": 0}

    def step(x: torch.Tensor) -> None:
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients={},
                dead_neuron_mask=None,
                n_training_steps=state["n"],
                is_logging_step=False,
            )
        )
        with torch.no_grad():
            _ = out.feature_acts.bool().float().sum(0)  # firing statistics, as its trainer
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        state["n"] += 1

    return sae, step, lambda x: sae(x)


def fvu(recon_fn, x: torch.Tensor) -> float:
    with torch.no_grad():
        r = recon_fn(x)
    return float((x - r).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def timed_steps(step, batches) -> float:
    step(batches[0])  # warm-up (allocations, lazy imports)
    t = time.perf_counter()
    for b in batches[1:]:
        step(b)
    return (time.perf_counter() - t) / (len(batches) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both libraries")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--store", default=None)
    ap.add_argument("--hook", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = BATCH * (args.steps + 1) + 8192
    x = from_store(args.store, args.hook, n) if args.store else synthetic(n)
    x = x * (D_IN**0.5 / x.norm(dim=1).mean())  # both libraries see the same normalised data
    batches = list(x[: BATCH * (args.steps + 1)].split(BATCH))
    held_out = x[-8192:]

    w = torch.randn(D_IN, D_SAE)
    xb = batches[0]
    matmul_s = timed_steps(lambda b: b @ w, batches[:4])
    hl_sae, hl_step, hl_recon = hiddenlens_trainer(args.lr)
    with torch.no_grad():
        hl_sae.b_dec.copy_(x.mean(0))
    hl_s = timed_steps(hl_step, batches)
    sl_sae, sl_step, sl_recon = saelens_trainer(args.lr)
    with torch.no_grad():
        sl_sae.b_dec.copy_(x.mean(0))
    sl_s = timed_steps(sl_step, batches)
    del xb
    print(
        f"threads={args.threads} steps={args.steps} batch={BATCH} d_in={D_IN} d_sae={D_SAE} k={K}"
    )
    print(f"dense encoder matmul      : {matmul_s * 1e3:8.1f} ms")
    print(f"hiddenlens step           : {hl_s * 1e3:8.1f} ms  ({BATCH / hl_s:9.0f} tokens/s)")
    print(f"sae-lens step             : {sl_s * 1e3:8.1f} ms  ({BATCH / sl_s:9.0f} tokens/s)")
    print(f"speed-up vs sae-lens      : {sl_s / hl_s:8.2f} x   (target >= 4)")
    print(f"step / dense matmul       : {hl_s / matmul_s:8.2f} x   (target <= 2)")
    f_hl, f_sl = fvu(hl_recon, held_out), fvu(sl_recon, held_out)
    print(
        f"held-out FVU after {BATCH * args.steps} tokens: hiddenlens {f_hl:.4f}, "
        f"sae-lens {f_sl:.4f} (ratio {f_hl / f_sl:.3f}, target <= 1.02)"
    )


if __name__ == "__main__":
    main()
